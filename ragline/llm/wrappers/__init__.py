"""Single-concern wrappers over the model protocol: `base` (forward everything), `cache`
(response cache), `replay` (record/replay cassettes), `tracing` (a chat span per call)."""
