"""Secrets never leave the process in a trace: every exporter sees spans through this filter.

Redaction runs on the finished span (attributes, event attributes, status message), so it
also covers spans and exception messages that ragline did not write itself. A matching
substring becomes "***"; the rest of the value stays readable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

MASK = "***"

_PATTERNS = re.compile(
    r"sk-[A-Za-z0-9_\-]{12,}"  # OpenAI, Anthropic (sk-ant-...)
    r"|Bearer\s+[A-Za-z0-9._~+/=\-]{8,}"
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack tokens
)
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
_SECRET_ATTRIBUTE = re.compile(r"(^|[._-])(api[_-]?key|authorization|password|secret|access[_-]token)$", re.IGNORECASE)
_MIN_ENV_SECRET = 6  # shorter values ("1", "yes") would mask ordinary text everywhere


def env_secrets() -> list[str]:
    """Values of environment variables whose names say they hold a secret, longest first."""
    found = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= _MIN_ENV_SECRET}
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, secrets: Sequence[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _PATTERNS.sub(MASK, text)


def _redact_value(value, secrets: Sequence[str]):
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, (list, tuple)):
        return tuple(_redact_value(v, secrets) for v in value)
    return value


def redact_attributes(attributes: Mapping | None, secrets: Sequence[str]) -> dict:
    return {
        key: MASK if _SECRET_ATTRIBUTE.search(key) else _redact_value(value, secrets)
        for key, value in (attributes or {}).items()
    }


def redact_span(span: ReadableSpan, secrets: Sequence[str]) -> ReadableSpan:
    """A copy of a finished span with every secret masked."""
    events = [
        Event(e.name, redact_attributes(e.attributes, secrets), timestamp=e.timestamp) for e in span.events
    ]
    status = span.status
    if status.description:
        status = Status(status.status_code, redact_text(status.description, secrets))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes, secrets),
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingExporter(SpanExporter):
    """Wraps an exporter so it only ever receives redacted spans."""

    def __init__(self, inner: SpanExporter, secrets: Sequence[str] = ()):
        self.inner = inner
        self.secrets = [s for s in secrets if len(s) >= _MIN_ENV_SECRET]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # Environment read per batch: keys set after start-up count too.
        secrets = sorted({*env_secrets(), *self.secrets}, key=len, reverse=True)
        return self.inner.export([redact_span(span, secrets) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
