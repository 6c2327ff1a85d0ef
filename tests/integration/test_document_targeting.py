"""Near-identical documents: a question naming a period or asking for the latest version is
answered from that document (`ragline.retrieval.targeting`), through the real engine and model.

The filings are text items named like files ("2023 Q2 acme.md"): their chunks read the same
every quarter but for the figures, so only the header and the payload tell them apart.
"""

from __future__ import annotations

import pytest
from items_connector import ItemsConnector

import ragline

LEAN = {"rerank": "none"}


def filing(company: str, sales: int) -> str:
    return (f"{company} quarterly report.\n\nNet sales were ${sales} million for the quarter, driven by widget demand "
            f"and services.\n\nOperating expenses grew with headcount.")  # fmt: skip


FILINGS = {
    "2023 Q1 acme.md": (filing("Acme", 101), None),
    "2023 Q2 acme.md": (filing("Acme", 102), None),
    "2023 Q3 acme.md": (filing("Acme", 103), None),
    "2023 Q2 globex.md": (filing("Globex", 902), None),
    "2023 Q3 globex.md": (filing("Globex", 903), None),
    "handbook.md": ("Employees get 25 days of paid leave each year.", None),
}


@pytest.fixture(scope="module", params=["edge", "server"])
def rag(request, tmp_path_factory, embedder):
    store = tmp_path_factory.mktemp("filings") / "store"
    kind = {"kind": "server", "url": ":memory:", "collection": "filings"} if request.param == "server" else {}
    with ragline.open(store, embedder=embedder, tracing={"enabled": False}, retrieval=LEAN, store=kind) as rag:
        report = rag.ingest(ItemsConnector("filings", FILINGS))
        assert report.added == len(FILINGS) and report.failed == 0
        yield rag


def documents(hits) -> list[str]:
    return [hit.document_id for hit in hits]


def test_a_named_period_is_answered_from_that_periods_documents_first(rag):
    hits = rag.retrieve("What were Acme's net sales in Q2 2023?", top_k=4)
    assert documents(hits)[:2] == ["2023 Q2 acme.md", "2023 Q2 globex.md"]  # the 2023-Q2 filings, then the rest
    assert len(hits) == 4  # the untargeted search fills the depth
    assert documents(rag.retrieve("Acme net sales in the second quarter of 2023", top_k=1)) == ["2023 Q2 acme.md"]
    # the stored text is the chunk's own; the header (what was indexed before it) is in the metadata
    assert hits[0].text.startswith("Acme quarterly report.")
    assert hits[0].metadata["context_header"] == ""  # a text item states no title, subject or date
    assert hits[0].metadata["periods"] == ["2023", "2023-Q2"]


def test_a_caller_filter_on_periods_wins_and_an_unknown_period_falls_back_to_every_document(rag):
    hits = rag.retrieve("Acme net sales in Q2 2023", top_k=3, filters={"periods": "2023-Q1"})
    assert documents(hits) == ["2023 Q1 acme.md"]
    assert set(documents(rag.retrieve("Acme net sales in Q4 2019", top_k=10))) == set(FILINGS)


def test_latest_is_the_newest_version_of_each_series_unless_the_question_looks_back(rag):
    question = "What were Acme's net sales in the latest quarterly report?"
    assert documents(rag.retrieve(question, top_k=1)) == ["2023 Q3 acme.md"]
    newest = documents(rag.retrieve(question, top_k=3))  # each series' newest, and the documents without versions
    assert newest[:2] == ["2023 Q3 acme.md", "2023 Q3 globex.md"] and newest[2] == "handbook.md"
    assert "2023 Q1 acme.md" in documents(rag.retrieve("How did Acme's net sales change over time?", top_k=5))


def test_latest_resolves_among_what_the_caller_may_read(tmp_path, embedder):
    docs = {name: (text, ["group:staff"]) for name, (text, _) in FILINGS.items()}
    docs["2023 Q4 acme.md"] = (filing("Acme", 104), ["user:cfo"])  # not yet public
    with ragline.open(tmp_path / "store", embedder=embedder, tracing={"enabled": False}, retrieval=LEAN,
                      access={"enabled": True}) as rag:  # fmt: skip
        rag.ingest(ItemsConnector("filings", docs))
        question = "Acme's net sales in the most recent report"
        assert documents(rag.retrieve(question, top_k=1, principals=["group:staff"])) == ["2023 Q3 acme.md"]
        assert documents(rag.retrieve(question, top_k=1, principals=["user:cfo", "group:staff"])) == ["2023 Q4 acme.md"]
        assert rag.retrieve(question, principals=["user:nobody"]) == []
        docs["2023 Q4 acme.md"] = (filing("Acme", 104), ["group:staff"])  # published: the newest moves
        docs["2024 Q1 acme.md"] = (filing("Acme", 105), ["group:staff"])
        rag.ingest(ItemsConnector("filings", docs))
        assert documents(rag.retrieve(question, top_k=1, principals=["group:staff"])) == ["2024 Q1 acme.md"]


def test_the_header_is_indexed_with_every_chunk_and_both_features_turn_off(tmp_path, embedder):
    folder = tmp_path / "docs"
    folder.mkdir()
    body = " ".join(f"Sentence {i} is about budgets and staffing." for i in range(60))
    (folder / "2023 Q2 plan.md").write_text(f"# Zanzibar expansion plan\n\n{body}\n")
    (folder / "2023 Q3 plan.md").write_text("# Other plan\n\nNothing about islands.\n")
    for on in (True, False):
        with ragline.open(tmp_path / f"store-{on}", embedder=embedder, tracing={"enabled": False},
                          retrieval={**LEAN, "target_documents": on}, chunking={"context_headers": on}) as rag:  # fmt: skip
            rag.ingest(folder)
            chunks = rag.store.count(filters={"document_id": "2023 Q2 plan.md"})
            found = rag.retrieve("Zanzibar", top_k=10, mode="sparse")  # BM25 reads the header too
            assert chunks > 1 and len(found) == (chunks if on else 1)
            assert all(hit.text.startswith("Sentence") for hit in found[1:])
            everywhere = rag.retrieve("What does the Q3 2023 plan say about islands?", top_k=10)
            if on:
                assert everywhere[0].document_id == "2023 Q3 plan.md"
            assert everywhere[0].metadata["periods"]  # the payload says which period each document is
