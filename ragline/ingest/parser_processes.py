"""Parser processes: files parsed on other cores while the ingesting process embeds.

Parsing a PDF is pure Python (pdfminer, then spaCy to classify each text box) and holds
one core; embedding keeps the others busy through the model's threads. Each worker is a
`python -m ragline.ingest.parse_worker` process that parses one document at a time, so a
parser that crashes (a segfault, the OOM killer) or hangs on a hostile file costs that
document alone: its worker is killed after `parse_timeout_seconds` and the next document
gets a fresh one. Workers are plain subprocesses rather than a multiprocessing pool, which
would re-import the caller's `__main__` in every worker and make each script that calls
`ingest` need an `if __name__ == "__main__"` guard.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from ragline.connectors.base import SourceItem
from ragline.ingest.loading import ParseOutcome
from ragline.ingest.parse_worker import PARENT_VARIABLE, READY, read_frame, write_frame
from ragline.ingest.parser_pool import ParserPool

# A worker imports unstructured, pdfminer and spaCy (about 4 s here) before it is ready.
START_TIMEOUT_SECONDS = 120.0
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_workers() -> int:
    """One per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _worker_environment() -> dict[str, str]:
    """The caller's environment; one math thread per worker (the workers are the
    parallelism), and ragline importable however the caller found it."""
    env = dict(os.environ, **dict.fromkeys(_ONE_THREAD, "1"), **{PARENT_VARIABLE: str(os.getpid())})
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


class WorkerGone(Exception):
    """The worker died, or was killed for taking too long, before it answered."""


class _Worker:
    """One parser process and its pipes; `parse` sends a document and waits for the answer."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ragline.ingest.parse_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_worker_environment(),
            start_new_session=True,  # a terminal's Ctrl-C goes to the ingest, which stops its workers
        )  # fmt: skip
        late = f"the parser process did not start within {START_TIMEOUT_SECONDS:g} s"
        if self._answer(START_TIMEOUT_SECONDS, late, "before it was ready") != READY:
            self.kill()
            raise WorkerGone("the parser process did not start")

    def _answer(self, timeout: float, late: str, doing: str):
        """The next frame, or WorkerGone when the process ends first (it died `doing`) or is
        killed when `timeout` runs out (`late` says so)."""
        timer = threading.Timer(timeout, self.process.kill)
        timer.start()
        try:
            return read_frame(self.process.stdout)
        except EOFError:
            code = self.process.wait()
            if not timer.is_alive():
                raise WorkerGone(late) from None
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            raise WorkerGone(f"the parser process died ({how}) {doing}") from None
        finally:
            timer.cancel()

    @property
    def alive(self) -> bool:
        """False once the process ended: killed by the timer just as it answered, say."""
        return self.process.poll() is None

    def parse(self, item: SourceItem, max_bytes: int, timeout: float) -> ParseOutcome:
        try:
            write_frame(self.process.stdin, (item, max_bytes))
        except OSError:  # a broken pipe: the worker is gone
            code = self.process.wait()
            raise WorkerGone(f"the parser process had exited (code {code})") from None
        late = f"parsing took longer than {timeout:g} s (ingest.parse_timeout_seconds); the parser was stopped"
        return self._answer(timeout, late, "while reading it")

    def close(self) -> None:
        """End of input: the worker exits after the document it may still be reading."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class _Slot:
    """One thread's parser process: None until the first document, and after one died."""

    worker: _Worker | None = None


class ParserProcesses(ParserPool):
    """`workers` parser processes, started on first use, sharing one queue of documents."""

    def __init__(self, workers: int, *, max_bytes: int, timeout: float):
        super().__init__(workers, max_bytes=max_bytes, timeout=timeout)
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()

    def _open_slot(self) -> _Slot:
        return _Slot()

    def _parse(self, slot: _Slot, item: SourceItem) -> ParseOutcome:
        """A fresh process after one died or was killed, so the next document is not
        blamed for the last."""
        try:
            if slot.worker is None or not slot.worker.alive:
                self._forget(slot.worker)
                slot.worker = self._start()
            return slot.worker.parse(item, self.max_bytes, self.timeout)
        except Exception as exc:  # whatever happens, the document gets an answer
            reason = str(exc) if isinstance(exc, WorkerGone) else f"parser process: {type(exc).__name__}: {exc}"
            if slot.worker is not None:
                slot.worker.kill()
                self._forget(slot.worker)
            slot.worker = None
            return ParseOutcome(reason=f"{reason}; it is retried next run")

    def _close_slot(self, slot: _Slot) -> None:
        if slot.worker is not None:
            slot.worker.close()
            self._forget(slot.worker)

    def _start(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._live.add(worker)
        return worker

    def _forget(self, worker: _Worker | None) -> None:
        with self._lock:
            self._live.discard(worker)

    def _interrupt(self) -> None:
        with self._lock:
            for worker in list(self._live):
                worker.process.kill()
