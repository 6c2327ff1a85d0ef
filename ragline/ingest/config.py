"""`[chunking]`, `[ingest]` and `[[sources]]`: what is read, and how it is cut and written."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ragline.settings import Section


class ChunkingConfig(Section):
    chunk_size: int = Field(
        200, ge=32, description="Maximum tokens (words and punctuation) per chunk; MiniLM reads ~256 word pieces."
    )
    chunk_overlap: int = Field(32, ge=0, description="Tokens repeated from the end of the previous chunk.")
    context_headers: bool = Field(
        True, description="Embed and BM25-index each chunk after a header naming its document (title, PDF "
        "subject and date) and section, so near-identical chunks of different documents stay apart; the stored text is "
        "unchanged. Changing it re-embeds every document once.",
    )

    @model_validator(mode="after")
    def _overlap_smaller_than_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        return self


class IngestConfig(Section):
    engine: Literal["local", "ray"] = Field(
        "local", description="Where documents are parsed and embedded: in this process and its parser processes, "
        "or as tasks and actors on a Ray cluster ([ray], the ray extra). The ledger and the store writes stay here.",
    )
    max_document_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Larger documents are reported as too large, not parsed."
    )
    max_delete_fraction: float = Field(
        0.2, ge=0.0, le=1.0,
        description="A run refuses to delete more than this share of a source's documents (see allow_mass_delete).",
    )
    allow_mass_delete: bool = False
    batch_chunks: int = Field(256, ge=1, description="Chunks embedded and written per ledger commit.")
    parse_workers: int | None = Field(
        None, ge=0, description="Parser processes for files (PDF, Office, HTML, ...), which parse on other cores while "
        "this process embeds. Default: one per CPU; 0: parse in the ingesting process only.",
    )
    parse_processes_after_seconds: float = Field(
        2.0, ge=0, description="A run parses files itself until that has taken this long (a parser process takes a "
        "few seconds to start), then hands the rest to parser processes; 0: from the first file.",
    )
    parse_timeout_seconds: float = Field(
        600.0, gt=0, description="A document a parser process has not parsed in this long fails (the process is "
        "stopped) and is retried next run; documents parsed in the ingesting process have no limit.",
    )


class SourceConfig(BaseModel):
    """One `[[sources]]` entry: a connector kind plus that connector's own settings (the extra
    keys), and when `ragline serve` runs it (fields of its own, not passed to the connector)."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="filesystem, web, dataset, sql, or a plugin's kind.")
    name: str | None = Field(
        None, min_length=1, description="The source's name in run history and schedules; default: the connector's "
        "source (as `ragline sources` shows it). web, sql and plugin kinds also get it as their own `name`.",
    )
    schedule: str | None = Field(None, description='5-field cron, e.g. "0 2 * * *", in `timezone`.')
    timezone: str = Field("UTC", description="IANA time zone of `schedule`, e.g. Europe/Berlin.")
    interval_seconds: float | None = Field(
        None, gt=0, description="Run every this many seconds instead of a cron schedule (frequent polling, tests).",
    )
    watch: bool = Field(False, description="Filesystem sources: also run when files change (debounced).")
    readers: list[str] | None = Field(
        None, description='Who may read this source\'s documents where the connector knows no better, e.g. '
        '["group:hr"]; "public" for everyone.',
    )
    owners: list[str] = Field(
        default_factory=list, description="Who may read documents whose readers are unknown (no connector ACL and "
        "no `readers`); none: only an [access] admin reads them.",
    )
    catch_up_seconds: float | None = Field(
        None, ge=0, description="Ticks missed while no server ran, within this window, give one catch-up run on "
        "start; default: one interval of the schedule; 0: none.",
    )

    @field_validator("schedule")
    @classmethod
    def _five_field_cron(cls, schedule: str | None) -> str | None:
        if schedule is None:
            return None
        from croniter import CroniterBadDateError, CroniterError, croniter

        fields = schedule.split()
        if len(fields) != 5:
            raise ValueError(f"{schedule!r} has {len(fields)} fields; a cron schedule has 5: minute hour "
                             "day-of-month month day-of-week, e.g. \"0 2 * * *\"")
        try:
            croniter(" ".join(fields)).get_next(float)
        except CroniterBadDateError:
            raise ValueError(f"{schedule!r} never fires (no such date)") from None
        except CroniterError as exc:
            raise ValueError(f"{schedule!r} is not a valid cron schedule: {exc}") from None
        return " ".join(fields)

    @field_validator("readers", "owners")
    @classmethod
    def _principals(cls, values: list[str] | None) -> list[str] | None:
        from ragline.access.principals import config_principals

        return config_principals(values)

    def access(self):
        """The source's default readers and owners (`ragline.access.readers.SourceAccess`)."""
        from ragline.access.readers import SourceAccess

        return SourceAccess.of(self.readers, self.owners)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(timezone, sorted(available_timezones()), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else " (an IANA name such as 'Europe/Berlin')"
            raise ValueError(f"unknown time zone {timezone!r}{hint}") from None
        return timezone

    @model_validator(mode="after")
    def _one_trigger_of_each_kind(self) -> SourceConfig:
        if self.schedule is not None and self.interval_seconds is not None:
            raise ValueError("give schedule or interval_seconds, not both")
        if self.watch and self.kind != "filesystem":
            raise ValueError(f"watch = true is for filesystem sources, not {self.kind}")
        if self.catch_up_seconds is not None and self.schedule is None and self.interval_seconds is None:
            raise ValueError("catch_up_seconds needs a schedule or interval_seconds")
        return self

    def connector_settings(self) -> dict[str, Any]:
        """What the connector is built from: the extra keys, and `name` where it is one of the
        kind's own settings (web and sql name their source with it), so naming a source for
        its runs never changes the source its documents are stored under."""
        settings = dict(self.model_extra or {})
        if self.name is not None and _settings_declare_name(self.kind):
            settings["name"] = self.name
        return settings


def _settings_declare_name(kind: str) -> bool:
    """Whether a kind's settings have a `name`: a built-in's model says; a plugin checks its
    own settings, so it gets `name` as it did before `name` named runs too."""
    from ragline.connectors.registry import builtin_settings

    settings = builtin_settings(kind)
    return settings is None or "name" in settings.model_fields
