"""ragline: retrieval-augmented generation over your own documents, end to end."""

import os

# unstructured phones home on import and on every partition call (10 s timeouts offline);
# switch that off before anything can import it, unless the user decided otherwise.
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

from ragline.app import Rag, open
from ragline.config import ConfigError, RaglineConfig, load_config
from ragline.models import Answer, Citation, Hit, IngestError, IngestReport, Usage

__all__ = [
    "Answer",
    "Citation",
    "ConfigError",
    "Hit",
    "IngestError",
    "IngestReport",
    "Rag",
    "RaglineConfig",
    "Usage",
    "load_config",
    "open",
]
__version__ = "0.1.0"
