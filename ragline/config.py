"""Configuration: `ragline.toml` (or an explicit file), overridden by `RAGLINE_*` env vars.

Each section's model lives beside the feature it configures (`ragline/<feature>/config.py`);
this module only aggregates them and loads the file.

Precedence, highest first: keyword overrides passed in code, environment variables
(`RAGLINE_LLM__PROVIDER=openai`, nested with `__`), the TOML file, defaults.

An unknown key is an error in every section (`ragline.settings.Section`) and in the
settings of a built-in `[[sources]]` kind; the message names the closest valid key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ragline.access.config import AccessConfig
from ragline.eval.config import EvalConfig
from ragline.ingest.config import ChunkingConfig, IngestConfig, SourceConfig
from ragline.llm.budget import BudgetLimits
from ragline.llm.config import CacheConfig, LLMConfig, ModelConfig, ReliabilityConfig, ReplayConfig
from ragline.pipelines.config import PipelinesConfig, PromptsConfig, QueryConfig
from ragline.ray.config import RayConfig
from ragline.retrieval.config import EmbeddingConfig, RetrievalConfig, StoreConfig
from ragline.settings import unknown_key, valid_keys
from ragline.state.config import SharedStateConfig
from ragline.temporal.config import TemporalConfig
from ragline.tracing.config import TracingConfig

DEFAULT_CONFIG_FILE = "ragline.toml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and field to fix."""


def _known_connector_keys(entry: SourceConfig) -> SourceConfig:
    """`[[sources]]` entries allow extra keys (the connector's settings): check them against
    the connector's model now, so a typo fails at load time rather than at ingest."""
    from ragline.connectors.registry import builtin_settings

    model = builtin_settings(entry.kind)
    unknown = sorted(set(entry.connector_settings()) - set(valid_keys(model))) if model else []
    if unknown:
        detail = ", ".join(unknown_key(key, model, f" for a {entry.kind} source", also=SourceConfig) for key in unknown)
        raise PydanticCustomError("unknown_key", "{detail}", {"detail": detail})
    return entry


class RaglineConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGLINE_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    store: StoreConfig = Field(default_factory=StoreConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    sources: list[Annotated[SourceConfig, AfterValidator(_known_connector_keys)]] = Field(
        default_factory=list, description="What `ragline ingest` with no paths reads."
    )
    llm: LLMConfig = Field(default_factory=LLMConfig)
    models: list[ModelConfig] = Field(
        default_factory=list, description="The provider chain, tried in order; empty: just [llm]."
    )
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    budget: BudgetLimits = Field(default_factory=BudgetLimits)
    shared_state: SharedStateConfig = Field(default_factory=SharedStateConfig)
    temporal: TemporalConfig = Field(default_factory=TemporalConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    pipelines: PipelinesConfig = Field(default_factory=PipelinesConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"[[models]] names must be unique; repeated: {', '.join(duplicated)}")
        return models

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if toml_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: itself, or the one inside list[...], X | None, Annotated."""
    if get_origin(annotation) is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((model for arg in get_args(annotation) if (model := _model_in(arg))), None)


def _model_at(path: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model `path` points into, e.g. ("models", 0) -> ModelConfig; () -> RaglineConfig."""
    model: type[BaseModel] | None = RaglineConfig
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # a list entry: the list's item model was found at the list's name
        fields = {key: field for name, field in model.model_fields.items() for key in (name, field.alias) if key}
        model = _model_in(fields[part].annotation) if part in fields else None
    return model


def _problem(error: ErrorDetails) -> str:
    """One validation error as `where: what`; an unknown key gets the closest valid key, and
    the RAGLINE_* variable it came from when one is set."""
    loc = error["loc"]
    model = _model_at(loc[:-1]) if error["type"] == "extra_forbidden" else None
    if model is None:
        return f"{'.'.join(map(str, loc))}: {error['msg']}"
    key = str(loc[-1])
    if len(loc) == 1:
        return unknown_key(key, model, " at the top level")
    env_var = "RAGLINE_" + "__".join(map(str, loc)).upper()
    from_env = f" from {env_var}" if env_var in {name.upper() for name in os.environ} else ""
    return f"{'.'.join(map(str, loc[:-1]))}: {unknown_key(key, model, from_env)}"


def load_config(config_file: str | Path | None = None, **overrides: Any) -> RaglineConfig:
    """Load configuration; `config_file=None` reads ./ragline.toml when it exists.

    `overrides` are nested dicts per section, e.g. `store={"path": "x"}`; they win over
    everything else.
    """
    path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
    if config_file and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    toml_file = path if path.is_file() else None

    class _Config(RaglineConfig):
        model_config = SettingsConfigDict(toml_file=toml_file)

    try:
        # Overrides merge into the env/TOML result, so one nested field does not erase its siblings.
        base = _Config()
        config = RaglineConfig.model_validate(_deep_merge(base.model_dump(), overrides)) if overrides else base
        return RaglineConfig.model_validate(config.model_dump())
    except ValidationError as exc:
        where = f"{toml_file}" if toml_file else "settings"
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise ConfigError(
            f"invalid configuration in {where} (or RAGLINE_* environment variables): {problems}"
        ) from None
    except Exception as exc:  # TOML syntax errors and the like
        if toml_file is None:
            raise
        raise ConfigError(f"cannot read config file {toml_file}: {exc}") from None


def secret_from_env(env_var: str | None, file: Path | None = None) -> str | None:
    """Read a secret by env-var name, else from a file holding only it; config files name
    where the secret is, never hold the value."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    if file is None:
        return None
    try:
        return Path(file).expanduser().read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {file}: {exc.strerror}") from None
