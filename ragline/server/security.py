"""Who may call the server: anyone on loopback by default; with `RAGLINE_SERVER_TOKEN` set
(required to bind any other address), only requests carrying it as a bearer token,
compared in constant time. `/healthz` answers without one, so probes need no secret."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request

TOKEN_ENV = "RAGLINE_SERVER_TOKEN"
OPEN_PATHS = frozenset({"/healthz"})


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose a store beyond this machine without a token."""
    if not is_loopback_host(host) and not token:
        raise ValueError(
            f"binding {host} exposes the store to the network: set {TOKEN_ENV} (clients send it as a bearer "
            "token), or bind 127.0.0.1"
        )


class TokenGuard:
    def __init__(self, token: str | None):
        self._token = token.encode() if token else None

    def allows(self, request: Request) -> bool:
        if self._token is None or request.url.path in OPEN_PATHS:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    @staticmethod
    def is_loopback(request: Request) -> bool:
        return request.client is not None and is_loopback_host(request.client.host)
