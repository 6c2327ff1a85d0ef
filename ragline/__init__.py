"""ragline: retrieval-augmented generation over your own documents, end to end.

The public names below load on first use, so importing one part of ragline (the chunker,
a connector) does not import the model stack, HTTP clients or OpenTelemetry.
"""

import os
from importlib import import_module
from typing import TYPE_CHECKING

# unstructured phones home on import and on every partition call (10 s timeouts offline);
# switch that off before anything can import it, unless the user decided otherwise.
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

_PUBLIC = {
    "Rag": "ragline.app",
    "open": "ragline.app",
    "connect": "ragline.server.client",
    "RemoteRag": "ragline.server.client",
    "RemoteError": "ragline.errors",
    "StoreBusyError": "ragline.errors",
    "ConfigError": "ragline.config",
    "RaglineConfig": "ragline.config",
    "load_config": "ragline.config",
    "Answer": "ragline.models",
    "Attempt": "ragline.models",
    "Citation": "ragline.models",
    "Hit": "ragline.models",
    "IngestError": "ragline.models",
    "IngestReport": "ragline.models",
    "Usage": "ragline.models",
    "Pipeline": "ragline.pipelines.pipeline",
    "ProviderError": "ragline.llm.base",
    "StreamInterrupted": "ragline.llm.base",
    "BudgetExceeded": "ragline.llm.budget",
    "StoreError": "ragline.errors",
}
__all__ = [
    "Answer",
    "Attempt",
    "BudgetExceeded",
    "Citation",
    "ConfigError",
    "Hit",
    "IngestError",
    "IngestReport",
    "Pipeline",
    "ProviderError",
    "Rag",
    "RaglineConfig",
    "RemoteError",
    "RemoteRag",
    "StoreBusyError",
    "StoreError",
    "StreamInterrupted",
    "Usage",
    "connect",
    "load_config",
    "open",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from ragline.app import Rag, open
    from ragline.config import ConfigError, RaglineConfig, load_config
    from ragline.errors import RemoteError, StoreBusyError, StoreError
    from ragline.llm.base import ProviderError, StreamInterrupted
    from ragline.llm.budget import BudgetExceeded
    from ragline.models import Answer, Attempt, Citation, Hit, IngestError, IngestReport, Usage
    from ragline.pipelines.pipeline import Pipeline
    from ragline.server.client import RemoteRag, connect


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ragline' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
