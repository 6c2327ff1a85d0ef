"""The names configured `[[sources]]` are run by: `name` when given, else the connector's own
`source` (what the ledger and `ragline sources` show), so history and sources agree.

Deriving a name builds the connector, which reads nothing yet (a stat of a folder, a
parsed URL). A source whose connector cannot be built (a missing folder) still gets a name,
from its position, so its failed runs are recorded; give it a `name` to keep one name
through such failures.
"""

from __future__ import annotations

from ragline.connectors.registry import make_connector
from ragline.ingest.config import SourceConfig


def source_name(entry: SourceConfig, index: int) -> str:
    if entry.name:
        return entry.name
    try:
        return make_connector(entry.kind, entry.connector_settings()).source
    except Exception:  # noqa: BLE001 - the run will fail with this error and record it
        return f"sources[{index}]:{entry.kind}"


def named_sources(entries: list[SourceConfig]) -> dict[str, SourceConfig]:
    """Each entry by its name, in config order; two entries of one name are a ValueError."""
    named: dict[str, SourceConfig] = {}
    for index, entry in enumerate(entries):
        name = source_name(entry, index)
        if name in named:
            raise ValueError(f"two [[sources]] are named {name!r}: give one of them another `name`")
        named[name] = entry
    return named
