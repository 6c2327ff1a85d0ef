"""`StoreService`: everything the owner process runs over one store, assembled and shut down
in one place: the open `Rag` (models loaded once), run history, the source runner, the
scheduler, and the idle optimizer.

The embedded engine's `optimize()` holds the GIL for seconds (14.8 s measured on a 10k
shard), freezing every query thread. Ingest runs here therefore skip it, and the optimizer
runs it only when no run is active and no query arrived for `idle_seconds`: a query can
still meet one optimize, never one per batch or per run.

Shutdown order (SIGTERM): stop firing schedules, ask running ingests to stop after their
current batch (the ledger commits it; the run ends `interrupted`), wait for them, then close
the store (which releases its ownership lock last).
"""

from __future__ import annotations

import logging
import threading
import time
from importlib.metadata import version as package_version
from pathlib import Path

from ragline.config import ConfigError
from ragline.ingest.config import SourceConfig
from ragline.runs.history import RunHistory, SourceRun
from ragline.runs.runner import SourceRunner
from ragline.schedule.scheduler import Scheduler
from ragline.state.url import shared_state_url

log = logging.getLogger(__name__)
IDLE_SECONDS = 30.0
STOP_TIMEOUT = 120.0


def scheduler_lease(config):
    """With `[shared_state]`, replicas share the schedules: a lease there picks the one that fires."""
    url = shared_state_url(config)
    if url is None or not config.sources:
        return None
    from ragline.state.leases import Lease

    return Lease(url, "scheduler")


def _hosted_temporal_worker(rag, runner):
    try:
        from ragline.temporal.hosted import HostedWorker
    except ImportError:
        raise ConfigError("[temporal] enabled needs the temporal extra: pip install 'ragline[temporal]'") from None
    return HostedWorker(rag, runner)


def _unscheduled(sources: list[SourceConfig]) -> list[SourceConfig]:
    """The entries without their schedules (positions kept: unnamed entries keep their names)."""
    return [entry.model_copy(update={"schedule": None, "interval_seconds": None}) for entry in sources]


class StoreService:
    def __init__(self, rag, *, token: str | None = None, idle_seconds: float = IDLE_SECONDS, schedules: bool = True):
        self.rag = rag
        self.token = token
        self.version = package_version("ragline")
        self.history = RunHistory(rag.path, url=shared_state_url(rag.config))
        self.runner = SourceRunner(rag, self.history, optimize=False)  # marks a killed owner's runs interrupted
        self.temporal = _hosted_temporal_worker(rag, self.runner) if schedules and rag.config.temporal.enabled else None
        # Under Temporal its schedules fire the runs; the server's own scheduler only watches folders.
        sources = _unscheduled(rag.config.sources) if self.temporal is not None else rag.config.sources
        self.scheduler = Scheduler(self.runner, sources, self.history, lease=scheduler_lease(rag.config))
        self.schedules_enabled = schedules
        self._idle_seconds = idle_seconds
        self._last_activity = time.monotonic()
        self._stopping = threading.Event()
        self._optimizer = threading.Thread(target=self._optimize_when_idle, name="ragline-optimizer", daemon=True)
        self.models_loaded = threading.Event()
        self._warm_up = threading.Thread(target=self._load_models, name="ragline-warm-up", daemon=True)

    def start(self) -> None:
        """Raises what keeps the Temporal worker from starting (`[temporal] enabled`)."""
        if self.temporal is not None:
            self.temporal.start()
        self._optimizer.start()
        self._warm_up.start()
        if self.schedules_enabled:
            self.scheduler.start()

    def _load_models(self) -> None:
        """Load the models and the ingest parts now, not in the first query or run: loading
        (importing torch, nltk, llama-index) holds the GIL for seconds, which stalled the
        queries made during the first ingest."""
        try:
            self.rag.components.retriever.retrieve("warm up", 1, readers=None)  # no results leave the server
            if self.rag.config.sources:  # what the first run would load while queries wait
                self.rag.embedder.embed(["warm up"])
                self.rag.components.ingestor  # noqa: B018 - the chunker: nltk and llama-index imports
            self.models_loaded.set()
        except Exception:  # a model that cannot load fails the first query with its own error
            log.warning("loading the query models failed; the first query will say why", exc_info=True)

    def stop_firing(self) -> None:
        """The first step of shutting down: no new scheduled run (safe in a signal handler)."""
        self.scheduler.stop(wait=False)

    def touch(self) -> None:
        """A query arrived: postpone the optimizer."""
        self._last_activity = time.monotonic()

    def start_source(self, name: str) -> SourceRun:
        return self.runner.start(name, "api")

    def start_paths(self, paths: list[Path], readers: list[str] | None = None) -> list[SourceRun]:
        return self.runner.start_paths(paths, "api", readers)

    def run_json(self, run: SourceRun) -> dict:
        """A run as the API shows it: the history's record, plus the full report while kept."""
        report = self.runner.report(run.id)
        return {**run.model_dump(mode="json"), "report": report.model_dump(mode="json") if report else None}

    def _optimize_when_idle(self) -> None:
        while not self._stopping.wait(1.0):
            idle = time.monotonic() - self._last_activity >= self._idle_seconds
            if idle and not self.runner.running() and self.runner.pending_optimize():
                log.info("store idle: optimizing the index")
                try:
                    self.rag.optimize()
                    self.runner.optimized()
                except Exception:  # an optimizer failure must not take the server down
                    log.exception("optimize failed; the next idle period retries")

    def close(self) -> None:
        self._stopping.set()
        if self._warm_up.is_alive():  # a model half-loaded in native code must not meet interpreter exit
            self._warm_up.join()
        if self.temporal is not None:  # no new run from Temporal; running ones stop after their batch
            self.temporal.stop()
        self.scheduler.stop()
        self.runner.stop_all(timeout=STOP_TIMEOUT)
        if self._optimizer.is_alive():  # an optimize in progress finishes before the store closes
            self._optimizer.join()
        self.history.close()
        self.rag.close()
