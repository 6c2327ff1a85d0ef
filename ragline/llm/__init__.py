"""The model stack: one small protocol (`base`), a client per wire protocol (`providers/`),
the reliability chain (`chain`: retry and fallback in one loop, with `breaker`, `budget` and
`pricing`), single-concern wrappers (`wrappers/`: response cache, record/replay, tracing),
`stack` that builds all of it from config, and `fake`, a scriptable provider for tests."""
