"""Query pipelines: grounded synthesis over retrieved chunks and the LLM providers behind it."""
