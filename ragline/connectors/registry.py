"""Connector kinds by name, so a config file can say `kind: sql` and plugins can add kinds.

Built-in kinds are listed here and imported only when used (a kind whose module is not
present is simply not available). Third-party packages add kinds through the entry-point
group `ragline.connectors`; each entry point is a callable taking the connector's config
dict and returning a `Connector`, e.g. in the plugin's pyproject.toml:

    [project.entry-points."ragline.connectors"]
    notion = "ragline_notion:make_connector"

A built-in kind wins over an entry point of the same name.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ragline.access.readers import SourceAccess
from ragline.connectors.base import Connector, ConnectorError
from ragline.models import IngestError

if TYPE_CHECKING:
    from ragline.ingest.config import SourceConfig

ENTRY_POINT_GROUP = "ragline.connectors"

# kind -> (module, connector class, config model); each connector is built as Connector(Config(**config)).
BUILTIN: dict[str, tuple[str, str, str]] = {
    "filesystem": ("ragline.connectors.filesystem", "FilesystemConnector", "FilesystemConfig"),
    "web": ("ragline.connectors.web", "WebConnector", "WebConfig"),
    "dataset": ("ragline.connectors.dataset", "DatasetConnector", "DatasetConfig"),
    "sql": ("ragline.connectors.sql", "SQLConnector", "SQLConfig"),
}


def _builtin_present(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def builtin_settings(kind: str) -> type[BaseModel] | None:
    """The settings model of a built-in kind; None for a plugin's kind (plugins check their
    own settings when the connector is made) or a built-in whose module is not present."""
    if kind not in BUILTIN or not _builtin_present(BUILTIN[kind][0]):
        return None
    module, _, model = BUILTIN[kind]
    return getattr(importlib.import_module(module), model)


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def available_connectors() -> dict[str, str]:
    """Kind -> "module:attr" of what builds it, built-ins first."""
    kinds = {kind: f"{module}:{cls}" for kind, (module, cls, _) in BUILTIN.items() if _builtin_present(module)}
    kinds.update({name: ep.value for name, ep in sorted(_plugins().items())})
    return kinds


def _config_error(kind: str, exc: ValidationError) -> ValueError:
    # Field and message only: pydantic's own text echoes input values (an SQL URL's password).
    problems = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or '(config)'}: {error['msg']}" for error in exc.errors()
    )
    return ValueError(f"{kind} connector config: {problems}")


def _validate(kind: str, model: type[BaseModel], config: dict[str, Any]) -> BaseModel:
    """The config as the kind's model; unknown keys are errors, since a typo would otherwise
    silently fall back to a default."""
    accepted = {alias for name, field in model.model_fields.items() for alias in (name, field.alias) if alias}
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ValueError(f"{kind} connector config: unknown field(s) {', '.join(unknown)}; expected {sorted(accepted)}")
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        raise _config_error(kind, exc) from None


def _builtin_factory(kind: str) -> Callable[[dict[str, Any]], Connector]:
    module_name, class_name, config_name = BUILTIN[kind]
    module = importlib.import_module(module_name)
    connector_class, config_model = getattr(module, class_name), getattr(module, config_name)
    return lambda config: connector_class(_validate(kind, config_model, config))


def make_connector(kind: str, config: dict[str, Any]) -> Connector:
    """Build a connector of `kind` from its config dict.

    Raises ValueError for an unknown kind (listing the available ones) or a bad config
    (naming the kind and the field); the connector itself may raise `ConnectorError`.
    """
    if kind in BUILTIN and _builtin_present(BUILTIN[kind][0]):
        factory = _builtin_factory(kind)
    elif (entry_point := _plugins().get(kind)) is not None:
        factory = entry_point.load()
    else:
        raise ValueError(f"unknown connector kind {kind!r}; available: {', '.join(available_connectors()) or 'none'}")
    try:
        connector = factory(dict(config))
    except ValidationError as exc:  # a plugin validating with pydantic itself
        raise _config_error(kind, exc) from None
    if not isinstance(connector, Connector):
        raise TypeError(f"connector kind {kind!r} returned {type(connector).__name__}, not a Connector")
    return connector


def source_connector(entry: SourceConfig) -> Connector | IngestError:
    """The connector of one `[[sources]]` entry, carrying the entry's default readers and
    owners; one that cannot even be set up (a missing folder, a bad setting) is the error
    entry its ingest report shows, so the other sources still run."""
    try:
        connector = make_connector(entry.kind, entry.connector_settings())
    except (ValueError, ConnectorError) as exc:
        return IngestError(document=f"[[sources]] kind={entry.kind}", error=str(exc))
    connector.access = entry.access()
    return connector


def ingest_connectors(
    sources: Any, configured: list[SourceConfig], readers: list[str] | None
) -> Iterator[Connector | IngestError]:
    """Connectors for what `Rag.ingest` was given: files, folders and connectors (with
    `readers` as their default readers), or by default the `configured` sources. A source
    that cannot even be set up becomes an error entry, so the other sources still run."""
    if sources is None:
        if not configured:
            raise ValueError("nothing to ingest: give paths, or configure [[sources]] in ragline.toml")
        if readers is not None:
            raise ValueError("readers= is for the paths or connectors given; set `readers` on each [[sources]] entry")
        yield from map(source_connector, configured)
        return
    access = SourceAccess.of(readers) if readers is not None else None
    if isinstance(sources, (str, Path, Connector)):
        sources = [sources]
    for source in sources:
        if isinstance(source, Connector):
            if access is not None:
                source.access = access
            yield source
            continue
        try:
            connector = path_connector(Path(source), access)
        except ConnectorError as exc:
            yield IngestError(document=str(source), error=str(exc))
            continue
        yield connector


def path_connector(path: Path, access: SourceAccess | None = None) -> Connector:
    """A file or folder given as such (not configured): its own filesystem source, with
    `access` as its default readers; ConnectorError when it cannot be read."""
    from ragline.connectors.filesystem import FilesystemConfig, FilesystemConnector

    connector = FilesystemConnector(FilesystemConfig(root=path))
    if access is not None:
        connector.access = access
    return connector
