"""Tracing: OpenTelemetry spans for queries (GenAI semantic conventions), kept in SQLite in
the store directory and/or sent over OTLP/HTTP, and read back as trees and HTML waterfalls.

Import from the modules: `config` (settings, no OpenTelemetry), `setup` (the tracer of a
store), `spans` (context helpers), `store` (the SQLite span store), `render`, `redact`.
The chat span around model calls is `ragline.llm.wrappers.tracing`."""
