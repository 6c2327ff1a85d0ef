"""ragline: retrieval-augmented generation over your own documents, end to end."""

import os

# unstructured phones home on import and on every partition call (10 s timeouts offline);
# switch that off before anything can import it, unless the user decided otherwise.
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

from ragline.app import Rag, open
from ragline.config import ConfigError, RaglineConfig, load_config
from ragline.models import Answer, Attempt, Citation, Hit, IngestError, IngestReport, Usage
from ragline.pipelines.pipeline import Pipeline
from ragline.pipelines.providers.base import ProviderError, StreamInterrupted
from ragline.pipelines.reliability.budget import BudgetExceeded

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
    "StreamInterrupted",
    "Usage",
    "load_config",
    "open",
]
__version__ = "0.1.0"
