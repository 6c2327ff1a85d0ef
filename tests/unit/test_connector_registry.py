"""Connector discovery (built-ins and a real installed entry point) and the LlamaHub wrapper."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterable

import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

from ragline.connectors.base import Connector, ConnectorError
from ragline.connectors.dataset import DatasetConnector
from ragline.connectors.filesystem import FilesystemConnector
from ragline.connectors.llamahub import LlamaHubConnector
from ragline.connectors.registry import available_connectors, make_connector
from ragline.connectors.sql import SQLConnector

# --- registry ---


def test_builtin_kinds_resolve(tmp_path):
    kinds = available_connectors()
    assert kinds["filesystem"] == "ragline.connectors.filesystem:FilesystemConnector"
    assert kinds["dataset"] == "ragline.connectors.dataset:DatasetConnector"
    assert kinds["sql"] == "ragline.connectors.sql:SQLConnector"
    # "web" is listed exactly when its module exists (it is written separately)
    assert ("web" in kinds) == (importlib.util.find_spec("ragline.connectors.web") is not None)
    if "web" in kinds:
        assert type(make_connector("web", {"urls": ["https://example.com/"]})).__name__ == "WebConnector"

    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    assert isinstance(make_connector("filesystem", {"root": str(tmp_path)}), FilesystemConnector)
    dataset = tmp_path / "d.jsonl"
    dataset.write_text('{"_id": "1", "title": "t", "text": "x"}\n', encoding="utf-8")
    connector = make_connector("dataset", {"path": str(dataset), "metadata_fields": ["year"]})
    assert isinstance(connector, DatasetConnector) and connector.config.metadata_fields == ["year"]
    sql = make_connector("sql", {"url": f"sqlite:///{tmp_path / 'x.db'}", "query": "SELECT 1 AS id, 'a' AS body",
                                 "id_column": "id", "text_columns": ["body"]})
    assert isinstance(sql, SQLConnector)
    assert [i.text for i in sql.items({})] == ["a"]


def test_unknown_kind_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown connector kind 'nope'.*filesystem.*dataset.*sql"):
        make_connector("nope", {})


def test_bad_config_names_kind_and_field(tmp_path):
    with pytest.raises(ValueError, match=r"sql connector config: id_column: Field required"):
        make_connector("sql", {"url": "sqlite://", "query": "SELECT 1", "text_columns": ["a"]})
    with pytest.raises(ValueError, match=r"dataset connector config: format: "):
        make_connector("dataset", {"path": str(tmp_path), "format": "xml"})
    with pytest.raises(ValueError, match=r"filesystem connector config: unknown field\(s\) inclde"):
        make_connector("filesystem", {"root": str(tmp_path), "inclde": ["*.md"]})
    with pytest.raises(ValueError) as failure:  # pydantic would echo the URL, password and all
        make_connector("sql", {"url": "postgresql://u:Hunter2pw@h/db", "query": "SELECT 1", "id_column": "id",
                               "text_columns": "body", "batch_size": "lots"})
    assert "batch_size" in str(failure.value) and "text_columns" in str(failure.value)
    assert "Hunter2pw" not in str(failure.value)


PLUGIN = '''
from ragline.connectors.base import Connector, SourceItem, sha256_text


class EchoConnector(Connector):
    def __init__(self, words):
        self.words = words

    @property
    def source(self):
        return "echo:"

    def items(self, known):
        for word in self.words:
            yield SourceItem(document_id=word, source=self.source, version="1", content_hash=sha256_text(word),
                             text=word)


def make(config):
    return EchoConnector(config["words"])


def not_a_connector(config):
    return object()
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real installed distribution: a module plus a dist-info folder on sys.path."""
    site = tmp_path / "site"
    dist_info = site / "ragline_echo-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (site / "ragline_echo_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ragline-echo\nVersion: 1.0\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(
        "[ragline.connectors]\n"
        "echo = ragline_echo_plugin:make\n"
        "broken = ragline_echo_plugin:not_a_connector\n"
        "filesystem = ragline_echo_plugin:make\n",  # may not shadow a built-in
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ragline_echo_plugin", raising=False)
    return site


def test_third_party_entry_point(installed_plugin, tmp_path):
    kinds = available_connectors()
    assert kinds["echo"] == "ragline_echo_plugin:make"
    assert kinds["filesystem"] == "ragline.connectors.filesystem:FilesystemConnector"
    connector = make_connector("echo", {"words": ["alpha", "beta"]})
    assert isinstance(connector, Connector)
    assert [i.document_id for i in connector.items({})] == ["alpha", "beta"]
    with pytest.raises(TypeError, match="'broken' returned object"):
        make_connector("broken", {})
    assert isinstance(make_connector("filesystem", {"root": str(tmp_path)}), FilesystemConnector)


def test_entry_point_disappears_with_its_distribution():
    assert "echo" not in available_connectors()


# --- LlamaHub ---


def test_simple_directory_reader_gets_stable_path_ids(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("Plain text note.", encoding="utf-8")
    (folder / "b.md").write_text("# Heading\n\nMarkdown body.\n", encoding="utf-8")
    connector = LlamaHubConnector(SimpleDirectoryReader(str(folder)), source="notes")
    first = {i.document_id: i for i in connector.items({})}
    assert set(first) == {str(folder / "a.txt"), str(folder / "b.md")}  # metadata file_path, not uuid4s
    again = {i.document_id: i.content_hash for i in connector.items({})}
    assert again == {k: v.content_hash for k, v in first.items()}
    note = first[str(folder / "a.txt")]
    assert note.text == "Plain text note." and note.title == "a.txt" and note.source == "llamahub:notes"
    assert note.metadata["file_name"] == "a.txt"
    assert "Markdown body." in first[str(folder / "b.md")].text
    json.dumps([i.metadata for i in first.values()])
    (folder / "a.txt").write_text("Edited note.", encoding="utf-8")
    assert {i.document_id: i.content_hash for i in connector.items({})}[str(folder / "a.txt")] != note.content_hash


class _LazyReader(BaseReader):
    def __init__(self):
        self.calls = []

    def lazy_load_data(self, *, channel: str) -> Iterable[Document]:
        self.calls.append(channel)
        yield Document(text="explicit", id_="msg-1", metadata={"url": "https://x/1", "when": object()})
        yield Document(text="random id, url", metadata={"url": "https://x/2", "title": "Second"})
        yield Document(text="page 1", metadata={"source": "report.pdf", "page": 1})
        yield Document(text="page 2", metadata={"source": "report.pdf", "page": 2})
        yield Document(text="nothing to go on")
        yield Document(text="explicit uuid", id_="6f1c1f2e-4a4b-4c5d-8e9f-0a1b2c3d4e5f")


def test_custom_reader_ids_metadata_and_lazy_loading():
    reader = _LazyReader()
    items = list(LlamaHubConnector(reader, source="chat", load_kwargs={"channel": "general"}).items({}))
    assert reader.calls == ["general"]
    ids = [i.document_id for i in items]
    assert ids[:4] == ["msg-1", "https://x/2", "report.pdf", "report.pdf#2"]
    assert ids[4] == f"sha256:{hashlib.sha256(b'nothing to go on').hexdigest()}"
    assert ids[5] == "6f1c1f2e-4a4b-4c5d-8e9f-0a1b2c3d4e5f"
    assert items[0].metadata == {"url": "https://x/1"}  # the object() is not JSON: dropped
    assert items[1].title == "Second" and items[3].metadata == {"source": "report.pdf", "page": 2}
    assert [i.document_id for i in LlamaHubConnector(_LazyReader(), source="chat",
                                                     load_kwargs={"channel": "general"}).items({})] == ids


class _EagerReader(BaseReader):
    def load_data(self, limit: int = 10) -> list[Document]:
        if limit < 0:
            raise RuntimeError("API quota exceeded")
        return [Document(text=f"doc {n}", id_=f"d{n}") for n in range(limit)]


def test_load_data_only_reader_and_failures():
    items = list(LlamaHubConnector(_EagerReader(), source="api", load_kwargs={"limit": 3}).items({}))
    assert [(i.document_id, i.text) for i in items] == [("d0", "doc 0"), ("d1", "doc 1"), ("d2", "doc 2")]
    assert all(i.version == i.content_hash for i in items)
    with pytest.raises(ConnectorError, match="_EagerReader failed: API quota exceeded"):
        list(LlamaHubConnector(_EagerReader(), source="api", load_kwargs={"limit": -1}).items({}))
    assert uuid.UUID(Document(text="x").id_).version == 4  # why ids are not taken blindly
