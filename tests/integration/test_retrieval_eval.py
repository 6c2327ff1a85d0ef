"""Retrieval modes, filters and the BEIR-style eval command, end to end on a small corpus."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import ragline
from ragline.cli import app, parse_filters
from ragline.connectors.dataset import DatasetConfig, DatasetConnector

TOPICS = {
    "d1": ("Lighthouses", "Lighthouses guide ships along rocky coasts with rotating lamps."),
    "d2": ("Glaciers", "Glaciers are slow rivers of ice that carve valleys over millennia."),
    "d3": ("Volcanoes", "Volcanoes erupt molten rock, ash and gases from the mantle."),
    "d4": ("Coral reefs", "Coral reefs are built by colonies of tiny marine animals in warm seas."),
    "d5": ("Deserts", "Deserts receive very little rain; cacti store water in their stems."),
    "d6": ("Tides", "Tides rise and fall twice a day because of the moon's gravity."),
    "d7": ("Bees", "Honey bees pollinate flowers and communicate by dancing."),
    "d8": ("Comets", "Comets are icy bodies whose tails point away from the sun."),
}
QUERIES = {
    "q1": "what carves valleys out of ice",
    "q2": "why do tides happen twice daily",
    "q3": "which insects dance to communicate",
    "q4": "tails of icy bodies pointing away from the sun",
}
QRELS = {"q1": "d2", "q2": "d6", "q3": "d7", "q4": "d8"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beir")
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in TOPICS.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items())
        + json.dumps({"_id": "unjudged", "text": "not in qrels"}) + "\n"
    )
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\r\n" + "".join(f"{q}\t{d}\t1\r\n" for q, d in QRELS.items())
    )
    return folder


def test_parse_filters():
    assert parse_filters(None) is None
    assert parse_filters(["source=a", "page_number>=2", "page_number<5", "kind=x,y", "title=*"]) == {
        "source": "a",
        "page_number": {"gte": 2, "lt": 5},
        "kind": ["x", "y"],
        "title": {"exists": True},
    }
    assert parse_filters(["updated>=2026-01-01T00:00:00"]) == {"updated": {"gte": "2026-01-01T00:00:00"}}
    with pytest.raises(typer.BadParameter):
        parse_filters(["nonsense"])


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_eval_retrieval_json(dataset, tmp_path_factory, mode):
    store = tmp_path_factory.getbasetemp() / "eval-store"  # shared: later runs reuse the ingest
    result = CliRunner().invoke(app, [
        "eval", "retrieval", "--corpus", str(dataset / "corpus.jsonl"), "--queries", str(dataset / "queries.jsonl"),
        "--qrels", str(dataset / "qrels.tsv"), "--mode", mode, "--store", str(store), "--json",
    ])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "queries", "mode", "rerank"}
    assert (scores["queries"], scores["mode"], scores["rerank"]) == (4, mode, False)
    assert scores["recall@100"] == 1.0
    assert scores["ndcg@10"] >= 0.75 and scores["mrr@10"] >= 0.75


def test_eval_retrieval_with_rerank(dataset, tmp_path):
    result = CliRunner().invoke(app, [
        "eval", "retrieval", "--corpus", str(dataset / "corpus.jsonl"), "--queries", str(dataset / "queries.jsonl"),
        "--qrels", str(dataset / "qrels.tsv"), "--rerank", "--rerank-top-n", "5", "--store", str(tmp_path / "s"),
        "--json",
    ])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["rerank"] is True and scores["mode"] == "hybrid"
    assert scores["ndcg@10"] >= 0.75


def test_eval_rejects_bad_qrels(dataset, tmp_path):
    bad = tmp_path / "qrels.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td2\tmaybe\n")
    result = CliRunner().invoke(app, [
        "eval", "retrieval", "--corpus", str(dataset / "corpus.jsonl"), "--queries", str(dataset / "queries.jsonl"),
        "--qrels", str(bad), "--store", str(tmp_path / "s"),
    ])
    assert result.exit_code == 1
    assert "qrels.tsv:2" in result.output


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_retrieve_cli_modes_and_filters(dataset, tmp_path, embedder, mode):
    store = tmp_path / "store"
    with ragline.open(store, embedder=embedder) as rag:
        assert rag.ingest(DatasetConnector(DatasetConfig(path=dataset / "corpus.jsonl"))).added == len(TOPICS)
    runner = CliRunner()

    def retrieve(*extra):
        result = runner.invoke(app, ["retrieve", "glaciers carving valleys", "--store", str(store), "--mode", mode,
                                     "--no-rerank", "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["hits"]

    hits = retrieve("--filter", "source=*", "--filter", "document_id=d2,d5,d7", "--top-k", "5")
    assert hits and {h["document_id"] for h in hits} <= {"d2", "d5", "d7"}
    assert hits[0]["document_id"] == "d2"
    assert {h["document_id"] for h in retrieve("--filter", "document_id=d1")} <= {"d1"}
