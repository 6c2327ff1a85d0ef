"""`[ray]`: where `ragline ingest --engine ray` runs parsing and embedding, and how much of it."""

from __future__ import annotations

from pydantic import Field

from ragline.settings import Section


class RayConfig(Section):
    address: str | None = Field(
        None, description="A running Ray cluster, HOST:PORT of its head node (as `ray start --head` prints); default: "
        "a local cluster the run starts and stops, on every CPU but one (the driver writes the store).",
    )
    embed_actors: int = Field(
        1, ge=1, description="Actors that hold the embedding model; each embeds a share of every window.",
    )
    actor_cpus: float = Field(
        0.5, gt=0, description="CPUs Ray reserves per embedding actor (fractional: a pool of whole-CPU actors on a "
        "small cluster leaves none for the parse tasks and hangs). Also the actor's torch threads, at least one.",
    )
    parse_cpus: float = Field(0.25, gt=0, description="CPUs Ray reserves per parse task.")
    parse_tasks: int | None = Field(
        None, ge=1, description="Parse tasks in flight at once; default: what the cluster's CPUs left by the actors "
        "hold at parse_cpus each.",
    )
    shard_texts: int = Field(
        512, ge=1, description="Texts per embedding call to one actor: a window is split into shards of this size.",
    )
    connect_timeout_s: float = Field(
        30, gt=0, description="Longest connecting to (or starting) the cluster may take before the run fails.",
    )
    embed_timeout_s: float = Field(
        600, gt=0, description="Longest one shard's embedding may take; then the run fails, keeping what it wrote.",
    )
