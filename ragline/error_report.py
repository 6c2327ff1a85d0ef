"""One JSON description of a failure, `{"error": {"kind", "message", ...}}`: what `--json`
prints when a command fails, and what the server answers, so a client routed to the server
reports exactly what the command reports without one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ragline.errors import ClusterUnreachable, EngineFailed, RemoteError, SharedStateError, StoreBusyError, StoreError


def error_json(error: BaseException | str, kind: str | None = None) -> dict[str, Any]:
    """`{"error": {...}}`: kind and message, plus what a caller can act on (a provider's
    status and Retry-After, every attempt of a failed chain, a budget's numbers, a busy store's owner)."""
    from ragline.access.principals import AccessError
    from ragline.config import ConfigError
    from ragline.llm.base import ProviderError
    from ragline.llm.budget import BudgetExceeded

    if isinstance(error, RemoteError):  # the owner process already described it
        return {"error": {**error.body, **({"kind": kind} if kind else {})}}

    body: dict[str, Any] = {"kind": kind or "error", "message": str(error)}
    if isinstance(error, ProviderError):
        body |= {"kind": kind or error.kind, "provider": error.provider, "status": error.status,
                 "retry_after": error.retry_after}
        if attempts := getattr(error, "attempts", None):
            body["attempts"] = [attempt.model_dump() for attempt in attempts]
        if error.partial_text:
            body["partial_text"] = error.partial_text
    elif isinstance(error, BudgetExceeded):
        body |= {"kind": kind or "budget", "scope": error.scope, "limit_usd": error.limit, "spent_usd": error.spent,
                 "needed_usd": error.needed}
    elif isinstance(error, AccessError):
        body["kind"] = kind or "access"
    elif isinstance(error, ConfigError):
        body["kind"] = kind or "config"
    elif isinstance(error, SharedStateError):
        body["kind"] = kind or "shared_state"
    elif isinstance(error, ClusterUnreachable):
        body["kind"] = kind or "cluster_unreachable"
    elif isinstance(error, EngineFailed):
        body["kind"] = kind or "engine_failed"
    elif isinstance(error, StoreError):
        body |= {"kind": kind or "store", "path": str(error.path)}
    elif isinstance(error, StoreBusyError):
        body |= {"kind": kind or "store_busy", "path": str(error.path), "owner": error.owner and asdict(error.owner)}
    return {"error": body}
