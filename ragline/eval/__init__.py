"""Evaluation: retrieval metrics now; answer-quality suites gated on prompt versions next."""
