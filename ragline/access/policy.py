"""`AccessPolicy`: `[access]` applied to one call's identity, giving the `Viewer` it reads as.

With access disabled and no identity, a call is unrestricted (what ragline did before access
control). With an identity, the call is filtered whether or not access is enabled. With
access enabled, a call without one is refused, and only principals listed in
`[access] admins` (themselves, or through a group) bypass the filter.
"""

from __future__ import annotations

from collections.abc import Iterable

from ragline.access.config import AccessConfig
from ragline.access.groups import CachedExpansion, make_resolver
from ragline.access.principals import PUBLIC, AccessError, Viewer, check_principals

IDENTITY_REQUIRED = (
    "access control is enabled ([access] enabled = true): name the caller, e.g. principals=['user:NAME'] "
    "in Python, --as user:NAME on the command line, \"principals\": [\"user:NAME\"] on the server API"
)


class AccessPolicy:
    def __init__(self, config: AccessConfig):
        self.config = config
        self._expand: CachedExpansion | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _expansion(self) -> CachedExpansion:
        if self._expand is None:
            resolver = make_resolver(self.config.resolver, self.config.groups_file, self.config.resolver_settings)
            self._expand = CachedExpansion(resolver, self.config.ttl_seconds)
        return self._expand

    def viewer(self, principals: Iterable[str] | None) -> Viewer:
        """Who a call with `principals` (None: no identity given) reads as; AccessError when
        refused, malformed, or when the group resolver cannot answer."""
        if principals is None:
            if self.config.enabled:
                raise AccessError(IDENTITY_REQUIRED)
            return Viewer.unrestricted()
        declared = check_principals(principals)
        if not declared:
            raise AccessError("principals is empty: name at least the calling user, e.g. ['user:NAME']")
        effective = self._expansion()(declared) | {PUBLIC}
        if not effective.isdisjoint(self.config.admins):
            return Viewer(readable=None, declared=tuple(declared), admin=True)
        return Viewer(readable=frozenset(effective), declared=tuple(declared))
