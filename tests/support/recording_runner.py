"""Stands in for `SourceRunner` under a scheduler: records what it starts, runs nothing."""

from __future__ import annotations

from types import SimpleNamespace


class RecordingRunner:
    """With a history, each start is also a finished run in it (what a scheduler reads back)."""

    def __init__(self, history=None):
        self.started: list[tuple[str, str]] = []
        self.history = history

    def start(self, name: str, trigger: str):
        self.started.append((name, trigger))
        if self.history is not None:
            self.history.finish(self.history.start(name, trigger).id, "succeeded")
        return SimpleNamespace(status="running")

    def running(self) -> list[str]:
        return []
