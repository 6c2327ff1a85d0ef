"""The base of every config section, and the wording of an unknown-key error.

A section that ignored unknown keys would turn a typo (`per_query_usd_max`) into a silent
default; each one refuses them, and the error names the closest valid key.
"""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def valid_keys(model: type[BaseModel]) -> list[str]:
    """The keys a config file may write for `model`: field names and aliases."""
    return sorted({key for name, field in model.model_fields.items() for key in (name, field.alias) if key})


def unknown_key(key: str, model: type[BaseModel], where: str = "", also: type[BaseModel] | None = None) -> str:
    """"unknown key `x`{where} (did you mean `y`?)", or the valid keys when none is close;
    `also`: a model whose keys are valid in the same place (a source's own `schedule` beside
    its connector's settings)."""
    keys = sorted({*valid_keys(model), *(valid_keys(also) if also else ())})
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"did you mean `{close[0]}`?" if close else f"valid keys: {', '.join(keys)}"
    return f"unknown key `{key}`{where} ({hint})"


def problems(error: ValidationError) -> str:
    """A validation error as `field.path: message; ...`, for messages that name a file."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
