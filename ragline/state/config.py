"""`[shared_state]`: where state shared by every replica lives (default: the store directory)."""

from __future__ import annotations

import os

from pydantic import Field, field_validator
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from ragline.settings import Section

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


class SharedStateConfig(Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL of a database every replica shares (postgresql+psycopg://user@host/db), "
        "holding the day budget's spend and in-flight holds; without a password (use url_env, or libpq's "
        "PGPASSWORD / .pgpass). Default: SQLite files in the store directory (one machine).",
    )
    url_env: str | None = Field(None, description="Env var holding that URL, password included (wins over url).")

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parsed = _parse(url, "shared_state.url")
        if parsed.password:
            raise ValueError("must not hold a password: put the whole URL in an env var and name it in url_env")
        return url

    def resolved_url(self) -> str | None:
        """The database URL, or None for the store directory's own files. A named env var
        that is unset fails: falling back to local files would silently stop sharing."""
        if self.url_env:
            value = os.environ.get(self.url_env)
            if not value:
                raise ValueError(f"shared_state.url_env names {self.url_env}, which is not set in the environment")
            _parse(value, f"the URL in {self.url_env}")
            return value
        return self.url


def _parse(url: str, where: str):
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"{where} is not a SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)") from None
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise ValueError(
            f"{where}: {parsed.get_backend_name()} is not supported for shared state; use PostgreSQL "
            "(or SQLite on one machine)"
        )
    return parsed
