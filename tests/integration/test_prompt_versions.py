"""`[prompts]` chooses the answer prompt of real queries, and every answer records its version."""

from __future__ import annotations

from ragline.pipelines.prompts import PromptRegistry, builtin_prompt

PROMPT_VERSION = builtin_prompt("synthesis").version


def test_rag_answers_record_the_configured_prompt_version(tmp_path, samples_store, embedder, local_llm):
    """`[prompts]` picks the answer prompt by label; the answer records the exact version,
    and a different prompt version is a different cache entry."""
    import ragline

    folder = tmp_path / "prompts"
    folder.mkdir()
    source = builtin_prompt("synthesis").source.replace("one or two sentences", "one sentence")
    (folder / "synthesis.j2").write_text(source)
    labelled, _ = PromptRegistry(folder).label("synthesis", "production")
    (folder / "synthesis.j2").write_text(source + "\n")  # edited after labelling: production keeps its content
    store = samples_store
    question = "How many days of paid leave do new employees get?"
    settings = {"llm": {"max_tokens": 8}, "retrieval": {"rerank": "none"}}
    with ragline.open(store, embedder=embedder, provider=local_llm, **settings) as rag:
        default = rag.query(question)
    with ragline.open(
        store, embedder=embedder, provider=local_llm, prompts={"dir": str(folder), "synthesis": "synthesis@production"}, **settings
    ) as rag:
        chosen = rag.query(question)
        assert "one sentence" in rag.synthesis_prompt.render(question="q", sources=[])[0].content
    assert default.prompt_version == PROMPT_VERSION
    assert chosen.prompt_version == labelled.version != PROMPT_VERSION
    assert not chosen.cached  # the same question under another prompt version is not a cache hit
