"""Runs of configured `[[sources]]`: `history` (what ran, when, triggered by what, with which
outcome: `runs.sqlite` in the store), `runner` (runs a source by name, never two of one
source at once, also across processes) and `sources` (the names sources are run by)."""
