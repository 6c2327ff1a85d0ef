"""Dataset (JSONL/CSV) and SQL connectors against real files and real databases: SQLite
always, and a PostgreSQL server the tests start themselves when its binaries are here."""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
from postgres_server import PASSWORD
from sqlalchemy import create_engine, event, text

from ragline.connectors.base import ConnectorError, KnownDocument, SourceItem
from ragline.connectors.dataset import DatasetConfig, DatasetConnector
from ragline.connectors.sql import SQLConfig, SQLConnector

SCIFACT = Path("/work/shared/data/scifact-dev/corpus.jsonl")


def _known(items: list[SourceItem]) -> dict[str, KnownDocument]:
    return {i.document_id: KnownDocument(version=i.version, content_hash=i.content_hash) for i in items}


def _by_id(items: list[SourceItem]) -> dict[str, SourceItem]:
    return {i.document_id: i for i in items}


# --- dataset ---


def test_scifact_corpus_reads_every_record():
    if not SCIFACT.is_file():
        pytest.skip(f"SciFact corpus not found at {SCIFACT}")
    connector = DatasetConnector(DatasetConfig(path=SCIFACT))
    items = list(connector.items({}))
    assert len(items) == 5183 and connector.errors == []
    first = json.loads(SCIFACT.open(encoding="utf-8").readline())
    assert items[0].document_id == first["_id"] == "4983"
    assert items[0].title == first["title"]
    assert items[0].text == f"{first['title']}\n\n{first['text']}"
    assert items[0].version == items[0].content_hash
    assert connector.source == f"dataset:{SCIFACT.resolve()}"
    assert len({i.document_id for i in items}) == 5183


def _write_jsonl(path: Path, lines: list[str | dict | bytes]) -> Path:
    with path.open("wb") as handle:
        for line in lines:
            raw = line if isinstance(line, bytes) else (json.dumps(line) if isinstance(line, dict) else line).encode()
            handle.write(raw + b"\n")
    return path


def test_jsonl_bad_records_are_per_record_errors(tmp_path):
    path = _write_jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "a", "title": "Alpha", "text": "First.", "lang": "en"},
        '{"_id": "b", "title": "broken"',                      # line 2: malformed JSON
        {"title": "No id", "text": "x"},                         # line 3: no id
        {"_id": "a", "title": "Again", "text": "dup"},           # line 4: duplicate id
        {"_id": "c", "title": "No text field"},                  # line 5: missing text field
        "",                                                      # line 6: blank, skipped
        "[1, 2]",                                                # line 7: not an object
        b'{"_id": "d", "title": "\xff", "text": "x"}',           # line 8: not UTF-8
        {"_id": 7, "title": None, "text": "Integer id, null title."},
        {"_id": 1.5, "title": "t", "text": "x"},                 # line 10: float id
    ])
    connector = DatasetConnector(DatasetConfig(path=path, metadata_fields=["lang"]))
    items = _by_id(list(connector.items({})))
    assert set(items) == {"a", "7"}
    assert items["a"].text == "Alpha\n\nFirst." and items["a"].title == "Alpha"
    assert items["a"].metadata == {"lang": "en"}
    assert items["7"].text == "Integer id, null title." and items["7"].title is None
    errors = dict(connector.errors)
    assert set(errors) == {"line 2", "line 3", "a", "c", "line 7", "line 8", "line 10"}
    assert "invalid JSON" in errors["line 2"]
    assert "no id field" in errors["line 3"]
    assert "duplicate" in errors["a"] and "line 1" in errors["a"]
    assert "'text'" in errors["c"] and "line 5" in errors["c"]
    assert "not a JSON object" in errors["line 7"]
    assert "UTF-8" in errors["line 8"]
    assert "id must be" in errors["line 10"]
    assert connector.keep == {"c"}  # readable id, bad record: the last good version stays
    list(connector.items({}))
    assert len(connector.errors) == 7  # reset per run, not accumulated


def test_jsonl_hash_covers_metadata_and_is_stable(tmp_path):
    record = {"_id": "x", "title": "T", "text": "Body", "year": 2020}
    config = DatasetConfig(path=tmp_path / "d.jsonl", metadata_fields=["year"])
    _write_jsonl(config.path, [record])
    first = next(DatasetConnector(config).items({}))
    assert next(DatasetConnector(config).items({})).content_hash == first.content_hash
    _write_jsonl(config.path, [{**record, "year": 2021}])
    assert next(DatasetConnector(config).items({})).content_hash != first.content_hash
    _write_jsonl(config.path, [{**record, "text": "Body changed"}])
    assert next(DatasetConnector(config).items({})).content_hash != first.content_hash


def test_explicit_id_field_and_text_fields(tmp_path):
    path = _write_jsonl(tmp_path / "d.ndjson", [{"_id": "ignored", "doc": "D1", "body": "B", "headline": "H"}])
    config = DatasetConfig(path=path, id_field="doc", text_fields=["body"], title_field="headline")
    (item,) = DatasetConnector(config).items({})
    assert (item.document_id, item.text, item.title) == ("D1", "B", "H")


def test_csv_records(tmp_path):
    long_text = "word " * 40_000  # beyond csv's default 128 KiB field limit
    path = tmp_path / "docs.csv"
    path.write_text(
        "\ufeffid,title,text,lang\n"
        "1,One,\"first, with a comma\",en\n"
        f"2,Two,{long_text},fr\n"
        "3,Three,third,de,EXTRA\n"
        "1,Dup,dup,en\n",
        encoding="utf-8",
    )
    connector = DatasetConnector(DatasetConfig(path=path, metadata_fields=["lang"]))
    items = _by_id(list(connector.items({})))
    assert set(items) == {"1", "2"}
    assert items["1"].text == "One\n\nfirst, with a comma" and items["1"].metadata == {"lang": "en"}
    assert items["2"].text == f"Two\n\n{long_text.strip()}"
    errors = dict(connector.errors)
    assert "more cell" in errors["line 4"] and "duplicate" in errors["1"]


def test_csv_header_without_configured_columns_fails_the_run(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("key,body\n1,x\n", encoding="utf-8")
    with pytest.raises(ConnectorError, match="title.*text.*id"):
        list(DatasetConnector(DatasetConfig(path=path)).items({}))


def test_unreadable_dataset_raises(tmp_path):
    with pytest.raises(ConnectorError, match="does not exist"):
        DatasetConnector(DatasetConfig(path=tmp_path / "missing.jsonl"))
    (tmp_path / "data.txt").write_text("{}", encoding="utf-8")
    with pytest.raises(ConnectorError, match="format"):
        DatasetConnector(DatasetConfig(path=tmp_path / "data.txt"))
    assert DatasetConnector(DatasetConfig(path=tmp_path / "data.txt", format="jsonl")).format == "jsonl"
    path = _write_jsonl(tmp_path / "gone.jsonl", [{"_id": "a", "title": "", "text": "x"}])
    connector = DatasetConnector(DatasetConfig(path=path))
    path.unlink()
    with pytest.raises(ConnectorError, match="cannot read"):
        list(connector.items({}))


# --- SQL: one contract, SQLite and PostgreSQL ---


ROWS = [
    {"id": i, "title": f"Title {i}", "body": f"Body of row {i}.", "lang": "en" if i % 2 else "fr",
     "updated_at": f"2024-01-0{i} 10:00:00"}
    for i in range(1, 6)
]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh `docs` table in SQLite or PostgreSQL; yields the URL."""
    url = f"sqlite:///{tmp_path / 'docs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS docs"))
        connection.execute(text(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT, lang TEXT, updated_at TIMESTAMP)"
        ))
        connection.execute(text("INSERT INTO docs VALUES (:id, :title, :body, :lang, :updated_at)"), ROWS)
    yield url
    engine.dispose()


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def _config(url: str, **overrides) -> SQLConfig:
    return SQLConfig(**{
        "url": url, "query": "SELECT id, title, body, lang, updated_at FROM docs;", "id_column": "id",
        "text_columns": ["title", "body"], "title_column": "title", "metadata_columns": ["lang"],
        "updated_at_column": "updated_at", **overrides,
    })


def _statements(connector: SQLConnector) -> list[tuple[str, object]]:
    """Every statement the connector sends (recorded on its own engine)."""
    sent: list[tuple[str, object]] = []
    event.listen(connector._engine, "before_cursor_execute",
                 lambda conn, cursor, statement, params, context, many: sent.append((statement, params)))
    return sent


def test_sql_full_pull(db_url):
    connector = SQLConnector(_config(db_url))
    items = _by_id(list(connector.items({})))
    assert set(items) == {"1", "2", "3", "4", "5"} and connector.errors == []
    one = items["1"]
    assert one.text == "Title 1\n\nBody of row 1." and one.title == "Title 1" and one.metadata == {"lang": "en"}
    assert one.version.startswith("2024-01-01") and one.version != one.content_hash
    assert connector.source.startswith("sql:") and PASSWORD not in connector.source


def test_sql_incremental_fetches_only_new_and_changed_rows(db_url):
    connector = SQLConnector(_config(db_url, batch_size=2))
    first = list(connector.items({}))
    known = _known(first)
    _sql(db_url,
         "UPDATE docs SET body = 'Rewritten.', updated_at = '2024-02-01 00:00:00' WHERE id = 2",
         "UPDATE docs SET lang = 'de', updated_at = '2024-02-01 00:00:00' WHERE id = 3",
         "DELETE FROM docs WHERE id = 4",
         "INSERT INTO docs VALUES (6, 'Six', 'New row.', 'en', '2024-02-02 00:00:00')")
    sent = _statements(connector)
    items = _by_id(list(connector.items(known)))
    assert set(items) == {"1", "2", "3", "5", "6"}  # 4 is gone, so the pipeline will delete it
    for unchanged in ("1", "5"):
        assert not items[unchanged].has_body
        assert items[unchanged].content_hash == known[unchanged].content_hash
        assert items[unchanged].version == known[unchanged].version
    assert items["2"].text == "Title 2\n\nRewritten." and items["2"].version != known["2"].version
    assert items["3"].metadata == {"lang": "de"} and items["3"].content_hash != known["3"].content_hash
    assert items["6"].text == "Six\n\nNew row."
    # one light query, then full rows only for 2, 3, 6 in IN-batches of at most two ids
    fetched = [params for statement, params in sent if " IN " in statement.upper()]
    ids = sorted(int(v) for params in fetched for v in (params.values() if isinstance(params, dict) else params))
    assert ids == [2, 3, 6] and len(fetched) == 2
    assert len(sent) == 3


def test_sql_without_updated_at_reads_and_hashes_everything(db_url):
    connector = SQLConnector(_config(db_url, updated_at_column=None))
    first = _by_id(list(connector.items({})))
    again = _by_id(list(connector.items(_known(list(first.values())))))
    assert all(item.has_body and item.version == item.content_hash for item in again.values())
    assert {k: v.content_hash for k, v in again.items()} == {k: v.content_hash for k, v in first.items()}
    _sql(db_url, "UPDATE docs SET lang = 'it' WHERE id = 1")  # metadata only, same updated_at
    changed = _by_id(list(connector.items({})))
    assert changed["1"].content_hash != first["1"].content_hash
    assert changed["2"].content_hash == first["2"].content_hash


def test_sql_bad_rows_are_per_row_errors(db_url):
    query = (
        "SELECT id, title, body, lang, updated_at FROM docs "
        "UNION ALL SELECT id, 'Dup', 'dup', lang, updated_at FROM docs WHERE id = 1 "
        "UNION ALL SELECT CAST(NULL AS INTEGER), 'No id', 'x', lang, updated_at FROM docs WHERE id = 2"
    )
    connector = SQLConnector(_config(db_url, query=query))
    for known in ({}, {"9": KnownDocument(version="x", content_hash="y")}):  # full and incremental paths
        items = [i for i in connector.items(known) if i.has_body]
        assert sorted(i.document_id for i in items) == ["1", "2", "3", "4", "5"]
        assert [i.title for i in items if i.document_id == "1"] == ["Title 1"]
        errors = dict(connector.errors)
        assert "duplicate" in errors["1"] and "id must be" in errors["row 7"]
        assert len(connector.errors) == 2


def test_sql_bad_query_and_columns_raise(db_url):
    with pytest.raises(ConnectorError) as bad_sql:
        list(SQLConnector(_config(db_url, query="SELECT nope FROM missing_table")).items({}))
    assert "missing_table" in str(bad_sql.value)
    with pytest.raises(ConnectorError, match="no column"):
        list(SQLConnector(_config(db_url, text_columns=["body", "summary"])).items({}))
    with pytest.raises(ConnectorError):  # the light query names a column the query lacks
        list(SQLConnector(_config(db_url, updated_at_column="modified")).items({"1": KnownDocument(
            version="v", content_hash="h")}))


def test_sql_unreachable_database_raises(tmp_path):
    connector = SQLConnector(_config(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"))
    with pytest.raises(ConnectorError, match="unable to open"):
        list(connector.items({}))
    with pytest.raises(ConnectorError, match="not a valid"):
        SQLConnector(_config("not a url"))


def test_sql_password_never_shown(postgres_url):
    wrong = postgres_url.replace(PASSWORD, "Wr0ng-Pa55")
    config = _config(wrong)
    assert "Wr0ng-Pa55" not in repr(config) and "Wr0ng-Pa55" not in str(config)
    connector = SQLConnector(config)
    assert "Wr0ng-Pa55" not in connector.source and "Wr0ng-Pa55" not in repr(connector)
    with pytest.raises(ConnectorError) as failure:
        list(connector.items({}))
    message = "".join(traceback.format_exception(failure.value))
    assert "password authentication failed" in message and "***@127.0.0.1" in message
    assert "Wr0ng-Pa55" not in message
    with pytest.raises(ConnectorError) as bad_sql:
        list(SQLConnector(_config(postgres_url, query="SELEC broken")).items({}))
    assert PASSWORD not in "".join(traceback.format_exception(bad_sql.value))


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_streams_with_a_server_side_cursor(db_url):
    import psycopg

    connector = SQLConnector(_config(db_url))
    cursors: list[type] = []
    event.listen(connector._engine, "before_cursor_execute",
                 lambda conn, cursor, *args: cursors.append(type(cursor)))
    assert len(list(connector.items({}))) == 5
    assert cursors and all(issubclass(c, psycopg.ServerCursor) for c in cursors)
