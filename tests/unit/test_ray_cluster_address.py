"""Where the Ray engine connects, decided before Ray is asked (no cluster needed)."""

from __future__ import annotations

import socket

import pytest

from ragline.errors import ClusterUnreachable
from ragline.ray.cluster import _host_port, _probe


@pytest.mark.parametrize(
    ("address", "expected"),
    [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
     ("auto", None), ("head", None)],
)  # fmt: skip
def test_the_probe_reads_host_and_port(address, expected):
    assert _host_port(address) == expected


def test_an_address_where_nothing_listens_is_refused_at_once():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ClusterUnreachable, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
            _probe(f"127.0.0.1:{port}", 2.0)


def test_a_listening_address_passes_the_probe():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        _probe(f"127.0.0.1:{server.getsockname()[1]}", 2.0)

