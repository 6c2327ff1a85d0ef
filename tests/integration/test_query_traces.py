"""A query through `ragline.open` over a real store and the real in-process model is one trace
in the store's SQLite, each step a span."""

from __future__ import annotations


def test_rag_query_is_one_trace_in_the_store(samples_store, embedder, local_llm):
    """Through `ragline.open`: a streamed query and its cache hit are traces in the store's
    SQLite, each a query span over the default pipeline's step spans (the model's chat span
    under the synthesize step), with the answer's trace id."""
    import ragline
    from ragline.tracing.store import TraceStore

    question = "How many days of paid leave do new employees get?"
    settings = {"llm": {"max_tokens": 8}, "cache": {"answers": False}}  # the response cache's hit, after retrieval
    with ragline.open(samples_store, embedder=embedder, provider=local_llm, **settings) as rag:
        *pieces, first = list(rag.query_stream(question))
        again = rag.query(question)
    assert again.cached and not first.cached
    with ragline.open(samples_store, embedder=embedder, provider=local_llm, llm={"max_tokens": 8}) as rag:
        rag.query(question)
        remembered = rag.query(question)  # the answer cache: one span, naming what the answer shows
    (root,) = TraceStore(samples_store / "traces.sqlite").load(remembered.trace_id).roots
    assert root.name == "query" and root.children == [] and root.attributes["ragline.cache.answer_hit"] is True
    assert root.attributes["ragline.answer.chunk_ids"] == [s.chunk_id for s in remembered.sources]
    store = TraceStore(samples_store / "traces.sqlite")
    for answer, cached in ((first, False), (again, True)):
        trace = store.load(answer.trace_id)
        (root,) = trace.roots
        assert root.name == "query"
        assert [child.name for child in root.children] == ["step retrieve", "step rerank", "step synthesize"]
        retrieve, rerank, synthesize = root.children
        assert rerank.attributes["ragline.rerank.document_ids"][0] == answer.sources[0].document_id
        assert len(retrieve.attributes["ragline.retrieval.document_ids"]) >= len(answer.sources)
        (chat,) = synthesize.children
        assert chat.name == f"chat {local_llm.model}"
        assert chat.attributes["ragline.cache.hit"] is cached
        assert chat.attributes["ragline.prompt.version"] == answer.prompt_version
        assert "ragline.query" not in root.attributes  # question text is opt-in
