"""Ingestion: parse, chunk, embed and write documents incrementally, tracked by a ledger."""
