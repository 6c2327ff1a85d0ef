"""Connecting to a Ray cluster, or starting a local one, within a hard time limit.

`ray.init(address=...)` against an address where nothing answers retries for minutes;
a TCP probe first, and a deadline on the whole start, turn that into a clear error.
"""

from __future__ import annotations

import logging
import socket
import threading

from ragline.config import ConfigError
from ragline.errors import ClusterUnreachable
from ragline.ingest.parser_processes import default_workers
from ragline.ray.config import RayConfig


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "ingest.engine = 'ray' needs the ray extra: pip install 'ragline[ray]' (or set ingest.engine = 'local')"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """HOST:PORT of `address` (`ray://` prefix allowed); None for `auto` and the like."""
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _probe(address: str, timeout: float) -> None:
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            return
    except OSError as exc:
        raise ClusterUnreachable(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start it (`ray start --head`), or fix "
            "ray.address (--address), or leave it unset for a local cluster"
        ) from None


def _use_token_if_any() -> None:
    """Present this machine's Ray token to a cluster named by address: Ray 2.60 does so by
    itself only for `address="auto"`, and a token cluster refuses a driver without one.
    (Ray's own check; private, so a Ray without it just connects as it would.)"""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


class _NoSignalWarning(logging.Filter):
    """Ray warns that it set no SIGTERM handler outside the main thread; ragline's own
    handler stops a run at its next batch boundary, so the warning only misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


_NO_SIGNAL_WARNING = _NoSignalWarning()


def local_cpus() -> int:
    """Every CPU but one: the ingesting process writes the store, and an actor pool that
    takes every CPU hangs on a small machine (ray #44687)."""
    return max(1, default_workers() - 1)


def first_line(error: BaseException) -> str:
    """A Ray error's headline: its message goes on with the remote traceback."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else 'no detail'}"


class Cluster:
    """This process's connection to Ray, held by one thread for as long as it is open: Ray
    ties a local cluster's processes to the thread that started them (they are killed when
    it ends), and a run's thread ends with the run. `close` disconnects, and stops a local
    cluster; a Ray session the caller had already started is the caller's, left alone."""

    def __init__(self, config: RayConfig):
        self.config = config
        self.ray = import_ray()
        self._ours = not self.ray.is_initialized()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        if self._ours:
            self._start()

    def _start(self) -> None:
        address, timeout = self.config.address, self.config.connect_timeout_s
        if address:
            _probe(address, min(timeout, 10.0))
            _use_token_if_any()
            options = {"address": address}
        else:
            options = {"address": "local", "num_cpus": local_cpus()}  # "local": even beside a `ray start` cluster
        ready, failure = threading.Event(), []
        logging.getLogger("ray._private.worker").addFilter(_NO_SIGNAL_WARNING)

        def hold() -> None:
            try:
                self.ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            except BaseException as exc:  # reported by the caller's thread
                failure.append(exc)
                return
            finally:
                ready.set()
            self._closing.wait()
            self.ray.shutdown()

        self._thread = threading.Thread(target=hold, name="ragline ray", daemon=True)
        self._thread.start()
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        if not ready.wait(timeout):
            self._closing.set()  # should it connect after all, it disconnects at once
            raise ClusterUnreachable(
                f"{where} did not start within {timeout:g} s (ray.connect_timeout_s): check that it is running and "
                "reachable from this machine, or raise ray.connect_timeout_s"
            )
        if failure:
            raise ClusterUnreachable(f"{where} could not be used: {type(failure[0]).__name__}: {failure[0]}") from None

    def cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 1.0))

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
