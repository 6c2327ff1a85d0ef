"""`[shared_state]` resolved for the parts that use it (the model stack, the server)."""

from __future__ import annotations

from ragline.config import ConfigError, RaglineConfig


def shared_state_url(config: RaglineConfig) -> str | None:
    """The shared database's URL, or None for the store directory's own files."""
    try:
        return config.shared_state.resolved_url()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
