"""`[access]`: whether every read must name its caller, whose groups count, who bypasses."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ragline.access.principals import config_principals
from ragline.settings import Section


class AccessConfig(Section):
    enabled: bool = Field(
        False, description="Every retrieve, query and pipeline run must name its caller (principals / --as); "
        "chunks are filtered by their readers inside every engine search.",
    )
    groups_file: str | None = Field(
        None, description='The built-in resolver: a TOML/JSON file, [groups] "group:hr" = ["user:hana", "group:payroll"].'
    )
    resolver: str | None = Field(
        None, description="A group resolver plugin by its `ragline.group_resolvers` entry-point name (LDAP, OIDC, ...)."
    )
    resolver_settings: dict[str, Any] = Field(default_factory=dict, description="Passed to the resolver plugin's factory.")
    ttl_seconds: float = Field(60.0, ge=0, description="How long a caller's flattened groups are reused.")
    admins: list[str] = Field(
        default_factory=list, description="Principals whose calls are not filtered (an explicit bypass; none by default)."
    )
    self_test: bool = Field(
        True, description="Before the first search, check on a scratch collection that the store applies the "
        "readers filter; refuse to serve if it does not.",
    )

    @field_validator("admins")
    @classmethod
    def _admins_are_principals(cls, admins: list[str]) -> list[str]:
        return config_principals(admins, where="[access] admins entry")
