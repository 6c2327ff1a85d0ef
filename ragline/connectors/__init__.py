"""Connectors: where documents come from (local files now; web, SQL, datasets, LlamaHub readers next)."""
