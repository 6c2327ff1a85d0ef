"""SSRF guard: a URL taken from config, a sitemap, a page or a redirect must not make the
server reach its own network (metadata endpoints, admin panels, databases on localhost).

`resolve_safe` resolves the host once, vets every address, and returns the one to connect
to, so the caller can pin the connection to it: checking a name and then letting the HTTP
client resolve it again would leave a DNS-rebinding window.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection

ALLOWED_SCHEMES = frozenset({"http", "https"})


class UnsafeURL(ValueError):
    """The URL may not be fetched (scheme, or a non-public address)."""


def unsafe_reason(address: str) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    for reason in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{reason}"):
            return reason.replace("_", "-")
    # Shared (100.64/10), documentation, 6to4/Teredo-embedded and similar ranges.
    return None if ip.is_global else "non-global"


def resolve_safe(
    scheme: str, host: str, port: int, *, allow_private: bool = False, allowed_hosts: Collection[str] = ()
) -> str:
    """The address to connect to for `host`; raises `UnsafeURL` if ANY resolved address is
    not public (one bad record is enough for an attacker) unless private addresses are
    allowed or the host is listed in `allowed_hosts`. DNS failures raise `OSError`."""
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL(f"scheme {scheme!r} is not allowed (only http and https)")
    host = host.lower().strip("[]")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OSError(f"{host} did not resolve")
    if not allow_private and host not in {h.lower().strip("[]") for h in allowed_hosts}:
        for address in addresses:
            reason = unsafe_reason(address)
            if reason:
                raise UnsafeURL(
                    f"refused: {host} resolves to {reason} address {address}; private addresses are not allowed"
                    f' (to allow this host, set allowed_hosts = ["{host}"] in the web source\'s [[sources]] entry,'
                    " or allow_private_addresses = true)"
                )
    return addresses[0]
