"""The answer cache's key: every part that decides an answer changes it."""

from __future__ import annotations

from ragline.config import RaglineConfig
from ragline.pipelines.answer_cache import answer_key

BASE = {"question": "q", "pipeline": {"name": "default", "steps": []}, "prompt_version": "answer@abc",
        "model_identity": "configured", "partition": None, "store": "/srv/a", "generation": "3"}  # fmt: skip


def test_every_part_of_an_answer_is_in_its_key():
    config = RaglineConfig()
    base = answer_key(config, **BASE)
    assert answer_key(RaglineConfig(), **BASE) == base  # deterministic
    changes = [("question", "q2"), ("pipeline", {"name": "default", "steps": [{"kind": "retrieve", "top_k": 2}]}),
               ("prompt_version", "answer@def"), ("model_identity", "fake/fake-model"), ("partition", "abc"),
               ("store", "/srv/b"), ("generation", "4"), ("generation", "3.1")]  # fmt: skip
    keys = {answer_key(config, **{**BASE, field: value}) for field, value in changes}
    assert len(keys) == len(changes) and base not in keys
    for section, update in (("retrieval", {"mode": "dense"}), ("llm", {"max_tokens": 64}), ("query", {"top_k": 3}),
                            ("embedding", {"batch_size": 8})):  # fmt: skip
        other = config.model_copy(update={section: getattr(config, section).model_copy(update=update)})
        assert answer_key(other, **BASE) != base, section
