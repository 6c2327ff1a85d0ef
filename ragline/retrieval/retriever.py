"""`Retriever`: the stages of retrieval over one store, each usable alone.

`retrieve` runs them in order (first-stage search, second-stage rerank, MMR) and is what
`Rag.retrieve` and `ragline retrieve` call; the default query pipeline runs the same stages
as its retrieve, rerank and mmr steps with the same depths (`depth`), so a query cites
exactly what `retrieve` returns.

Access control lives here too: `search` and `retrieve` take the caller's `readers` (its
effective principals, None for an unrestricted call) as a required argument, so no stage
can search without deciding whose search it is; the store applies it inside the engine
query. Rerank and MMR only reorder what such a search returned.

Thread safety lives here, in one rule: the embedded engine and the embedding model are not
thread-safe, so every stage that touches them (search) or runs a model (rerank) holds the
retriever's lock. Pipeline fan-out and async queries may call any stage from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from ragline.models import Hit
from ragline.retrieval.config import RetrievalConfig
from ragline.retrieval.embeddings import TextEmbedder
from ragline.retrieval.points import point_hit
from ragline.retrieval.rerank import Reranker
from ragline.retrieval.store import Filters, ScoredPoint, SearchMode, VectorStore
from ragline.retrieval.targeting import targeted_search
from ragline.text import valid_unicode

Vectors = Mapping[str, Sequence[float]]
# A caller's effective principals (`Viewer.readable`); None: an unrestricted call.
Readers = frozenset[str] | None


def first_stage_depth(settings: RetrievalConfig, top_k: int, *, rerank: bool, mmr: bool) -> int:
    """How many first-stage hits a query for `top_k` needs: a reranker or MMR reorders the
    best `rerank_depth`, so the first stage must hand over at least that many."""
    return max(top_k, settings.rerank_depth) if rerank or mmr else top_k


class Retriever:
    def __init__(
        self, store: VectorStore, embedder: TextEmbedder, settings: RetrievalConfig, *,
        reranker: Reranker | None = None,
    ):  # fmt: skip
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self._lock = threading.RLock()

    def depth(self, top_k: int, *, rerank: bool, mmr: bool) -> int:
        return first_stage_depth(self.settings, top_k, rerank=rerank, mmr=mmr)

    def search(
        self, question: str, top_k: int, filters: Filters | None = None, *, readers: Readers,
        mode: SearchMode | None = None, with_vectors: bool = False,
    ) -> tuple[list[Hit], dict[str, list[float]]]:  # fmt: skip
        """First stage: the best `top_k` chunks by `mode` (default `retrieval.mode`) that
        `readers` may read, aimed at the documents the question names (`targeting`), and
        their dense vectors by chunk id when asked (MMR reads them)."""
        question = valid_unicode(question)
        if not question.strip():
            raise ValueError("question is empty")
        mode = mode or self.settings.mode
        with self._lock:
            if self.store.is_empty():
                return [], {}
            vector = self.embedder.embed_query(question) if mode != "sparse" else None

            def run(narrowed: Filters | None, k: int) -> list[ScoredPoint]:
                return self.store.search(
                    vector, k, narrowed, text=question, mode=mode, candidates=self.settings.candidates,
                    with_vectors=with_vectors, readers=readers,
                )  # fmt: skip

            points = targeted_search(question, filters, top_k, run) if self.settings.target_documents else run(filters, top_k)
        hits = [point_hit(point) for point in points]
        vectors = {hit.chunk_id: point.vector for hit, point in zip(hits, points) if point.vector is not None}
        return hits, vectors

    def rerank(self, question: str, hits: list[Hit], *, top_n: int | None = None, fusion: str | None = None) -> list[Hit]:
        """The second stage re-scores the best `top_n` (default `retrieval.rerank_depth`);
        `fusion` "rrf" (default `retrieval.rerank_fusion`) fuses its rank with the first stage's."""
        if self.reranker is None:
            raise ValueError("reranking needs a reranker: set retrieval.rerank to 'vectors', 'onnx' or 'sentence-transformers'")
        top_n = top_n or self.settings.rerank_depth
        fused = (fusion or self.settings.rerank_fusion) == "rrf"
        with self._lock:
            return self.reranker.rerank(valid_unicode(question), hits, top_n=top_n, fusion=fused)

    def diversify(
        self, hits: list[Hit], vectors: Vectors, *, top_n: int | None = None, lambda_: float | None = None
    ) -> list[Hit]:
        """MMR over the best `top_n` (default `retrieval.rerank_depth`): only the head shares
        one score scale (reranked or not); the tail keeps its order."""
        from ragline.retrieval.mmr import diversify

        top_n = top_n or self.settings.rerank_depth
        head, tail = hits[:top_n], hits[top_n:]
        missing = [hit.chunk_id for hit in head if hit.chunk_id not in vectors]
        if missing:
            raise ValueError(
                f"MMR needs the dense vector of every hit it reorders; none for {missing[:3]}: "
                "search with with_vectors (a pipeline's retrieve step: `with_vectors: true`)"
            )
        lambda_ = self.settings.mmr_lambda if lambda_ is None else lambda_
        return diversify(head, [h.score for h in head], [vectors[h.chunk_id] for h in head], lambda_) + tail

    def retrieve(
        self,
        question: str,
        top_k: int = 10,
        filters: Filters | None = None,
        *,
        readers: Readers,
        mode: SearchMode | None = None,
        rerank: bool | None = None,
        mmr: bool | None = None,
    ) -> list[Hit]:
        """The `top_k` chunks best matching `question` that `readers` may read: the first stage (`mode`, default
        `retrieval.mode`), then the second stage unless `rerank=False` or none is
        configured, then MMR with `mmr` (default `retrieval.mmr`)."""
        mmr = self.settings.mmr if mmr is None else mmr
        if rerank and self.reranker is None:
            raise ValueError("rerank requested but retrieval.rerank = 'none'")
        reranking = self.reranker is not None and rerank is not False
        depth = self.depth(top_k, rerank=reranking, mmr=mmr)
        hits, vectors = self.search(question, depth, filters, readers=readers, mode=mode, with_vectors=mmr)
        if reranking and hits:
            hits = self.rerank(question, hits)
        if mmr and hits:
            hits = self.diversify(hits, vectors)
        return hits[:top_k]
