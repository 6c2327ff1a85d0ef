"""ragline against LlamaIndex on the same documents in one run (issue #16, target 5): first ingest,
unchanged re-run, and retrieve p50/p95 (top 5) with and without a cross-encoder second stage.

    python benchmarks/llamaindex_side_by_side.py [--docs DIR] [--queries 50] [--reruns 3] [--json]

Needs these two beside llama-index-core 0.14.25 (a dry run showed they add only themselves):

    .venv/bin/pip install llama-index-vector-stores-qdrant==0.10.4 llama-index-embeddings-huggingface==0.8.0

Same model files and settings on both sides, otherwise each side's defaults:
- embedding: the bundled all-MiniLM-L6-v2: ragline's `Embedder`, `HuggingFaceEmbedding(model_name=<its
  folder>)` (batch 10, queries through torch). Models load and parsers import before any timer.
- chunks: `SentenceSplitter` gets ragline's chunk_size, chunk_overlap (200 / 32) and regex word tokenizer,
  its other defaults kept (it takes the metadata it prepends off each chunk's budget). Parsers differ:
  `SimpleDirectoryReader(filename_as_id=True)`, PDFs by pypdf one Document per page (see
  `pdf_extractor`), against ragline's pdfminer/unstructured parsing; chunk counts are shown.
- store: `QdrantVectorStore` on qdrant-client's local mode in a temporary folder (what a LlamaIndex user
  gets without a server: a pure-Python emulation), dense (its default); ragline's embedded Qdrant
  engine, hybrid dense + BM25 (its default).
- re-run: an `IngestionPipeline` with a docstore (and its default cache), as LlamaIndex's docs recommend,
  so unchanged Documents are skipped; each re-run reads the folder again. ragline: `rag.ingest` again.
  Best of `--reruns`, the sides alternating.
- second stage: 20 candidates through one `OnnxCrossEncoder` object (the bundled int8
  ms-marco-MiniLM-L-12-v2). sentence-transformers' CrossEncoder cannot load it (../shared/MODELS.md), so
  LlamaIndex gets a small `BaseNodePostprocessor` scoring with it as `SentenceTransformerRerank` does
  (EMBED metadata mode, cross-encoder score alone): `similarity_top_k=20` + postprocessor to 5, or
  `similarity_top_k=5`. ragline: the same cross-encoder fused with the first stage by RRF, or
  `rerank=False`; and its default `rag.retrieve(q, top_k=5)`: bge-small-en vectors stored at ingest
  (the first ingest pays for them), the best 40 fused by RRF, set against LlamaIndex's reranked
  path. The variants' order rotates per query.
Ratios are ragline time / LlamaIndex time (below 1: ragline is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is a local folder
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ragline
from ragline.ingest.chunking import tokenize
from ragline.ingest.config import ChunkingConfig
from ragline.retrieval.embeddings import Embedder, bundled_model_path
from ragline.retrieval.rerank import OnnxCrossEncoder
from ragline.retrieval.retriever import Retriever

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sec10q-dev"
PACKAGES = ("ragline", "llama-index-core", "llama-index-vector-stores-qdrant", "llama-index-embeddings-huggingface",
            "qdrant-client", "onnxruntime", "torch", "sentence-transformers")


def _busy_seconds() -> float | None:  # CPU seconds all processes have used (Linux)
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # user + system, all threads


def timed(fn) -> tuple[object, dict[str, float | None]]:
    busy, cpu, start = _busy_seconds(), _own_cpu(), time.perf_counter()
    result = fn()
    seconds, own, after = time.perf_counter() - start, _own_cpu() - cpu, _busy_seconds()
    others = None if busy is None or after is None else max(after - busy - own, 0.0)
    return result, {"s": seconds, "cpu_s": own, "others_cpu_s": others}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1e3, "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1e3}


def _machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform()}


def _version(name: str) -> str:
    with contextlib.suppress(PackageNotFoundError):
        return version(name)
    return "not installed"


def onnx_rerank(encoder, top_n: int):
    """A LlamaIndex node postprocessor scoring with ragline's `OnnxCrossEncoder` object."""
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode
    from pydantic import PrivateAttr

    class OnnxCrossEncoderRerank(BaseNodePostprocessor):
        top_n: int = 5
        _encoder: object = PrivateAttr()

        def __init__(self, encoder, top_n: int):
            super().__init__(top_n=top_n)
            self._encoder = encoder

        def _postprocess_nodes(self, nodes, query_bundle=None):
            if query_bundle is None or not nodes:
                return nodes[: self.top_n]
            texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
            for node, score in zip(nodes, self._encoder.scores(query_bundle.query_str, texts), strict=True):
                node.score = score
            return sorted(nodes, key=lambda n: n.score, reverse=True)[: self.top_n]

    return OnnxCrossEncoderRerank(encoder, top_n)


def pdf_extractor() -> tuple[dict, str]:
    """SimpleDirectoryReader's default PDF reader lives in llama-index-readers-file; without it a PDF is read
    as UTF-8 text (its raw bytes). Every release that fits llama-index-core 0.14 pins pypdf<7 (7.1.1 is
    installed), so failing it this repeats its `PDFReader` (0.7.0): pypdf, one Document per page."""
    try:
        import llama_index.readers.file  # noqa: F401
        return {}, "llama-index-readers-file PDFReader"
    except ImportError:
        import pypdf
        from llama_index.core.readers.base import BaseReader
        from llama_index.core.schema import Document

    class PypdfPages(BaseReader):
        def load_data(self, file, extra_info=None, fs=None):
            with open(file, "rb") as fp:
                pdf = pypdf.PdfReader(fp)
                return [Document(text=page.extract_text(), metadata={"page_label": label, "file_name": Path(file).name,
                                                                     **(extra_info or {})})
                        for page, label in zip(pdf.pages, pdf.page_labels, strict=True)]

    return {".pdf": PypdfPages()}, f"PDFReader's logic in this script (pypdf {pypdf.__version__})"


class LlamaIndexSide:
    """A reader, an IngestionPipeline (splitter + embedding, docstore, Qdrant local mode) per store."""

    def __init__(self, docs: Path, root: Path, embed_model, chunking: ChunkingConfig):
        from llama_index.core.ingestion import IngestionPipeline
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.core.storage.docstore import SimpleDocumentStore
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        self.docs, self.embed_model = docs, embed_model
        self.extractor, self.pdf_reader = pdf_extractor()
        self.client = QdrantClient(path=str(root / "qdrant"))
        self.vector_store = QdrantVectorStore(collection_name="bench", client=self.client)
        splitter = SentenceSplitter(chunk_size=chunking.chunk_size, chunk_overlap=chunking.chunk_overlap,
                                    tokenizer=tokenize)
        self.pipeline = IngestionPipeline(transformations=[splitter, embed_model], vector_store=self.vector_store,
                                          docstore=SimpleDocumentStore())

    def ingest(self) -> tuple[int, list]:
        from llama_index.core import SimpleDirectoryReader

        reader = SimpleDirectoryReader(str(self.docs), filename_as_id=True, file_extractor=self.extractor or None)
        documents = reader.load_data()
        return len(documents), self.pipeline.run(documents=documents)

    def retrievers(self, encoder) -> dict[str, object]:
        from llama_index.core import VectorStoreIndex

        index = VectorStoreIndex.from_vector_store(self.vector_store, embed_model=self.embed_model)
        deep, rerank = index.as_retriever(similarity_top_k=20), onnx_rerank(encoder, 5)
        return {"rerank": lambda q: rerank.postprocess_nodes(deep.retrieve(q), query_str=q),
                "no_rerank": index.as_retriever(similarity_top_k=5).retrieve}

    def close(self) -> None:
        self.client.close()


def run(args, log: Console) -> dict[str, object]:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    for module in ("ragline.ingest.parsing", "pypdf"):  # parser imports outside the timers
        importlib.import_module(module)
    load_start = os.getloadavg()
    questions = [row["Question"] for row in csv.DictReader(args.qna.open(encoding="utf-8"))][: args.queries]
    chunking = ChunkingConfig()
    embedder = Embedder()
    embedder.embed(["load the model before the timers"])
    hf = HuggingFaceEmbedding(model_name=str(bundled_model_path()), device="cpu")  # the same model files
    hf.get_text_embedding("load the model before the timers")
    root = Path(tempfile.mkdtemp(prefix="ragline-vs-llamaindex-"))
    result: dict[str, object] = {"docs": str(args.docs), "queries": len(questions), "load_average_start": load_start,
                                 "first_ingest_order": "llamaindex first" if args.llamaindex_first else "ragline first",
                                 "chunk_size": chunking.chunk_size, "chunk_overlap": chunking.chunk_overlap,
                                 "llamaindex_embed_batch_size": hf.embed_batch_size}
    try:
        rag = ragline.open(root / "ragline", embedder=embedder)  # the model loaded above
        li = LlamaIndexSide(args.docs, root / "llamaindex", hf, chunking)
        first = {"ragline": lambda: rag.ingest(args.docs), "llamaindex": li.ingest}
        order = list(first)[:: -1 if args.llamaindex_first else 1]
        log.print(f"first ingest of {args.docs} ({', then '.join(order)}) ...")
        done = {side: timed(first[side]) for side in order}
        (report, ingest_r), ((li_docs, nodes), ingest_l) = done["ragline"], done["llamaindex"]
        texts = [p.payload.get("text", "") for p in rag.store.iter_points()]
        result["ragline"] = {"documents": report.added, "failed": report.failed, "chunks": len(texts),
                             "mean_chunk_chars": statistics.fmean(len(t) for t in texts or [""])}
        result["llamaindex"] = {"documents": li_docs, "chunks": len(nodes), "points": li.client.count("bench").count,
                                "pdf_reader": li.pdf_reader,
                                "mean_chunk_chars": statistics.fmean(len(n.get_content()) for n in nodes or [""])}
        result["ingest"] = {"ragline": ingest_r, "llamaindex": ingest_l}
        reruns = {"ragline": lambda: rag.ingest(args.docs).chunks_embedded, "llamaindex": lambda: len(li.ingest()[1])}
        timings: dict[str, list] = {side: [] for side in reruns}
        for i in range(args.reruns):
            for side in list(reruns)[:: 1 if i % 2 == 0 else -1]:
                timings[side].append(timed(reruns[side]))
        result["rerun"] = {side: min((t for _, t in runs), key=lambda t: t["s"]) for side, runs in timings.items()}
        result["rerun"].update(runs=args.reruns, chunks_redone={s: max(n for n, _ in r) for s, r in timings.items()})
        # ragline's default second stage reads the vectors this ingest stored; the cross-encoder
        # rows run the same `OnnxCrossEncoder` object on both sides, over the same store.
        encoder, current, pairs = OnnxCrossEncoder(), [""], {"ragline rerank": [], "llamaindex rerank": []}
        crossed = Retriever(rag.store, embedder, rag.config.retrieval.model_copy(update={"rerank": "onnx"}),
                            reranker=encoder)
        scores = encoder.scores

        def counted(query, passages):  # how many pairs each side's cross-encoder reads
            pairs.setdefault(current[0], []).append(len(passages))
            return scores(query, passages)

        encoder.scores = counted  # the same object serves both sides
        li_runs = li.retrievers(encoder)
        variants = {"ragline default": lambda q: rag.retrieve(q, top_k=5),
                    "ragline rerank": lambda q: crossed.retrieve(q, 5, readers=None),
                    "ragline no_rerank": lambda q: rag.retrieve(q, top_k=5, rerank=False),
                    "llamaindex rerank": li_runs["rerank"], "llamaindex no_rerank": li_runs["no_rerank"]}
        for fn in variants.values():  # warm: the ONNX sessions, the query encoder, caches
            fn("warm up the query path")
        samples: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        log.print(f"retrieve, {len(questions)} queries x {len(names)} variants ...")
        for i, question in enumerate(questions):
            for name in names[i % len(names):] + names[: i % len(names)]:
                current[0] = name
                start = time.perf_counter()
                variants[name](question)
                samples[name].append(time.perf_counter() - start)
        result["retrieve"] = {name: _percentiles(s) for name, s in samples.items()}
        result["rerank_pairs_per_query"] = {name: statistics.fmean(pairs[name]) if pairs[name] else 0
                                            for name in ("ragline rerank", "llamaindex rerank")}
        rag.close()
        li.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["ratios"] = ratios(result)
    result["load_average_end"] = os.getloadavg()
    result["versions"] = {"python": platform.python_version(), **{name: _version(name) for name in PACKAGES}}
    result["machine"] = _machine()
    return result


def ratios(result: dict) -> dict[str, float]:
    out = {"first_ingest": result["ingest"]["ragline"]["s"] / result["ingest"]["llamaindex"]["s"],
           "unchanged_rerun": result["rerun"]["ragline"]["s"] / result["rerun"]["llamaindex"]["s"]}
    for stage, peer in (("default", "rerank"), ("rerank", "rerank"), ("no_rerank", "no_rerank")):
        for p in ("p50_ms", "p95_ms"):
            r, li = result["retrieve"][f"ragline {stage}"][p], result["retrieve"][f"llamaindex {peer}"][p]
            out[f"retrieve_{stage}_{p[:3]}"] = r / li
    return out


def show(result: dict, console: Console) -> None:
    def cpu(t: dict) -> str:
        others = "-" if t["others_cpu_s"] is None else f"{t['others_cpu_s']:.1f}"
        return f"{t['s']:.4f} s (CPU {t['cpu_s']:.2f}, others {others})"

    table = Table("measure", "ragline", "LlamaIndex", "ragline / LlamaIndex", title=f"ragline vs LlamaIndex: "
                  f"{result['docs']}, {result['queries']} queries, first ingest {result['first_ingest_order']}")
    ratio = result["ratios"]
    runs = result["rerun"]["runs"]
    for key, label in (("ingest", "first ingest (wall)"), ("rerun", f"unchanged re-run (best of {runs})")):
        table.add_row(label, cpu(result[key]["ragline"]), cpu(result[key]["llamaindex"]),
                      f"{ratio['first_ingest' if key == 'ingest' else 'unchanged_rerun']:.2f}x")
    for stage, peer, label in (("default", "rerank", "ragline's default (stored vectors, 40 -> 5) vs cross-encoder"),
                               ("rerank", "rerank", "with cross-encoder (20 -> 5)"),
                               ("no_rerank", "no_rerank", "first stage only")):  # fmt: skip
        for p in ("p50_ms", "p95_ms"):
            r, li = result["retrieve"][f"ragline {stage}"][p], result["retrieve"][f"llamaindex {peer}"][p]
            table.add_row(f"retrieve top 5 {p[:3]}, {label}", f"{r:.1f} ms", f"{li:.1f} ms",
                          f"{ratio[f'retrieve_{stage}_{p[:3]}']:.2f}x")
    console.print(table)
    r, li = result["ragline"], result["llamaindex"]
    console.print(f"chunks: ragline {r['chunks']} from {r['documents']} files ({r['failed']} failed, mean "
                  f"{r['mean_chunk_chars']:.0f} chars); LlamaIndex {li['chunks']} nodes ({li['points']} points) from "
                  f"{li['documents']} Documents (mean {li['mean_chunk_chars']:.0f} chars; PDFs: {li['pdf_reader']}); "
                  f"chunk_size {result['chunk_size']}, overlap {result['chunk_overlap']}, LlamaIndex embed batch "
                  f"{result['llamaindex_embed_batch_size']}")
    console.print(f"chunks re-embedded by the re-runs (max): {result['rerun']['chunks_redone']}; "
                  f"pairs the cross-encoder read per query: {result['rerank_pairs_per_query']}")
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    m = result["machine"]
    start, end = (" / ".join(f"{x:.2f}" for x in result[k]) for k in ("load_average_start", "load_average_end"))
    console.print(f"machine: {m['cpus']} CPUs, {m['cpu_model']}, {m['platform']}; "
                  f"load average {start} at start, {end} at end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=DATA / "docs")
    parser.add_argument("--qna", type=Path, default=DATA / "qna_data.csv", help="CSV with a Question column")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--reruns", type=int, default=3, help="unchanged re-runs per side, >= 1 (best is reported)")
    parser.add_argument("--llamaindex-first", action="store_true", help="first ingest: LlamaIndex before ragline")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args()
    # With --json, libraries' prints go to stderr: stdout carries the one JSON object only.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = run(args, Console(stderr=True))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result, Console(width=None if sys.stdout.isatty() else 150))


if __name__ == "__main__":
    main()
