"""Durable scheduled runs on Temporal (extra `ragline[temporal]`).

`ragline temporal worker` owns the store the way `ragline serve` does, registers one
Temporal Schedule per scheduled `[[sources]]` entry, and runs each ingestion as a workflow:
an ingest activity (the local pipeline: list, parse and embed in windows, upsert and commit
per batch, in its crash-safe order), then, when it wrote anything, an optimize activity.

The ledger is the checkpoint, not Temporal's event history: chunks and vectors never pass
through workflow payloads. A worker killed mid-run stops heartbeating; Temporal retries the
activity on the next worker, whose recovery step deletes what the dead one wrote but did not
commit, and whose run skips every document already committed (unchanged). So a retry
resumes from the last committed batch, and ids are deterministic: no duplicates.

The engine's `optimize()` holds the GIL for seconds and would starve the heartbeats of an
activity around it (a 6 s optimize let Temporal start a second attempt while the first
still ran): it is an activity of its own, with a start-to-close timeout and no heartbeat one.
"""
