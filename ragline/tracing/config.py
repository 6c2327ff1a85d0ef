"""`[tracing]`: where spans go and what they may contain (plain settings; no OpenTelemetry import)."""

from __future__ import annotations

from pydantic import Field

from ragline.settings import Section

TRACES_FILE = "traces.sqlite"


class TracingConfig(Section):
    """`[tracing]`: where spans go and what they may contain."""

    enabled: bool = Field(True, description="Record a trace for every query.")
    store: bool = Field(True, description=f"Keep traces in {TRACES_FILE} in the store directory (`ragline traces`).")
    retention_days: float | None = Field(
        30, gt=0, description=f"Traces older than this are dropped from {TRACES_FILE} when a store opens (None: keep all)."
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318 (/v1/traces is added when no path is given)."
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers for the OTLP exporter, non-secret values only."
    )
    otlp_headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP header -> environment variable holding its value (e.g. Authorization = 'LANGFUSE_OTLP_AUTH'): "
        "credentials stay out of the config file, and their values are masked in every span.",
    )
    otlp_timeout: float = Field(10.0, gt=0, description="Seconds per OTLP export request.")
    capture_content: bool = Field(
        False, description="Record prompt, completion and question text in spans (secrets are masked either way)."
    )
    service_name: str = Field("ragline", description="The `service.name` resource attribute.")
