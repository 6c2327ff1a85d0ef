"""Connectors that know a document's readers: file mode bits, an ACL mapping file, a SQL
column. Real files with real chmod, a real SQLite database, and one run through the
pipeline to show a chmod reaching search results without re-embedding.

Expected owner and group names come from this process's user and group databases, so the
tests hold under any account (root included: readers come from mode bits, not from what
the process itself may open)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import ragline
from ragline.connectors import acl
from ragline.connectors.base import ConnectorError, KnownDocument
from ragline.connectors.filesystem import FilesystemConfig, FilesystemConnector
from ragline.connectors.sql import SQLConfig, SQLConnector

pytestmark = pytest.mark.skipif(os.name != "posix", reason="mode bits and pwd/grp are POSIX")


def _user_of(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return f"user:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"user:uid-{uid}"


def _group_of(path: Path) -> str:
    gid = path.stat().st_gid
    try:
        return f"group:{grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"group:gid-{gid}"


def _write(root: Path, relative: str, body: str, mode: int = 0o644) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    os.chmod(path, mode)
    return path


def _items(connector, known=None) -> dict:
    return {item.document_id: item for item in connector.items(known or {})}


def _known(items: dict) -> dict[str, KnownDocument]:
    return {doc: KnownDocument(version=item.version, content_hash=item.content_hash) for doc, item in items.items()}


# --- filesystem: posix mode bits ---


def test_posix_owner_group_and_other_bits_become_readers(tmp_path: Path) -> None:
    owner_only = _write(tmp_path, "owner.txt", "a", 0o400)
    _write(tmp_path, "group.txt", "b", 0o440)
    _write(tmp_path, "world.txt", "c", 0o444)
    _write(tmp_path, "owner-and-world.txt", "d", 0o604)
    user, group = _user_of(owner_only), _group_of(owner_only)

    items = _items(FilesystemConnector(FilesystemConfig(root=tmp_path, permissions="posix")))

    assert {doc: item.readers for doc, item in items.items()} == {
        "owner.txt": [user],
        "group.txt": sorted([user, group]),
        "world.txt": sorted([user, group, "public"]),
        "owner-and-world.txt": sorted([user, "public"]),
    }


def test_without_permissions_readers_stay_unknown(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", "a", 0o600)
    assert _items(FilesystemConnector(FilesystemConfig(root=tmp_path)))["a.txt"].readers is None


@pytest.mark.parametrize("open_refused", [False, True], ids=["as-this-process", "open-refused"])
def test_a_file_readable_by_nobody_has_no_readers(tmp_path: Path, open_refused: bool) -> None:
    """Mode 000: readers [] (only an admin), never unknown. A process other than root cannot
    open the file either (forced here for root too): the unchanged-file path, which stats
    the file instead, must still give its readers."""
    path = _write(tmp_path, "locked.txt", "secret", 0o600)
    connector = FilesystemConnector(FilesystemConfig(root=tmp_path, permissions="posix"))
    first = _items(connector)
    os.chmod(path, 0o000)
    if open_refused:

        def refuse(opened: Path):
            raise PermissionError(13, "Permission denied", str(opened))

        connector._open = refuse
    try:
        again = _items(connector, _known(first))
    finally:
        os.chmod(path, 0o600)
    assert again["locked.txt"].readers == []
    assert again["locked.txt"].content_hash == first["locked.txt"].content_hash
    assert connector.errors == []


def test_chmod_with_same_content_gives_new_readers_and_the_same_hash(tmp_path: Path) -> None:
    path = _write(tmp_path, "report.txt", "quarterly numbers", 0o644)
    connector = FilesystemConnector(FilesystemConfig(root=tmp_path, permissions="posix"))
    before = _items(connector)["report.txt"]
    assert "public" in before.readers

    os.chmod(path, 0o600)
    unchanged = _items(connector, _known({"report.txt": before}))["report.txt"]
    rehashed = _items(connector)["report.txt"]  # no ledger: the file is read and hashed again

    assert unchanged.readers == rehashed.readers == [_user_of(path)]
    assert unchanged.content_hash == rehashed.content_hash == before.content_hash
    assert unchanged.version == before.version


def test_an_id_without_a_name_becomes_uid_or_gid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "a.txt", "a", 0o440)

    def no_such_entry(number: int):
        raise KeyError(number)

    monkeypatch.setattr(acl.pwd, "getpwuid", no_such_entry)
    monkeypatch.setattr(acl.grp, "getgrgid", no_such_entry)
    items = _items(FilesystemConnector(FilesystemConfig(root=tmp_path, permissions="posix")))
    info = path.stat()
    assert items["a.txt"].readers == sorted([f"user:uid-{info.st_uid}", f"group:gid-{info.st_gid}"])


def test_a_failing_name_lookup_fails_and_keeps_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "a.txt", "a", 0o600)
    _write(tmp_path, "b.txt", "b", 0o404)

    def name_service_down(uid: int):
        raise OSError("name service unreachable")

    monkeypatch.setattr(acl.pwd, "getpwuid", name_service_down)
    connector = FilesystemConnector(FilesystemConfig(root=tmp_path, permissions="posix"))
    items = _items(connector)

    assert items == {}  # never yielded with unknown (or public) readers
    assert connector.keep == {"a.txt", "b.txt"}
    assert sorted(doc for doc, _ in connector.errors) == ["a.txt", "b.txt"]
    assert all("name service unreachable" in reason for _, reason in connector.errors)


# --- filesystem: acl_file ---

RULES = """
[[rules]]
glob = "hr/secret/*"
readers = ["user:boss"]

[[rules]]
glob = "hr/**"
readers = ["group:hr", "user:hana"]

[[rules]]
glob = "*.md"
readers = ["public"]

[[rules]]
glob = "archive/*"
readers = []
"""


def _tree(root: Path) -> None:
    for relative in ("hr/secret/pay.txt", "hr/team/list.txt", "notes.md", "hr/guide.md", "archive/old.txt", "misc.txt"):
        _write(root, relative, f"text of {relative}", 0o644)


def test_acl_file_first_matching_rule_wins_and_unmatched_is_unknown(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _tree(root)
    (tmp_path / "acl.toml").write_text(RULES, encoding="utf-8")

    items = _items(FilesystemConnector(FilesystemConfig(root=root, acl_file=tmp_path / "acl.toml")))

    assert {doc: item.readers for doc, item in items.items()} == {
        "hr/secret/pay.txt": ["user:boss"],
        "hr/team/list.txt": ["group:hr", "user:hana"],
        "hr/guide.md": ["group:hr", "user:hana"],  # "hr/**" comes before "*.md"
        "notes.md": ["public"],
        "archive/old.txt": [],
        "misc.txt": None,
    }


def test_acl_rule_wins_over_posix_bits_and_posix_fills_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _tree(root)
    (tmp_path / "acl.toml").write_text(RULES, encoding="utf-8")

    items = _items(FilesystemConnector(FilesystemConfig(root=root, acl_file=tmp_path / "acl.toml", permissions="posix")))

    misc = root / "misc.txt"
    assert items["notes.md"].readers == ["public"]
    assert items["hr/secret/pay.txt"].readers == ["user:boss"]
    assert items["misc.txt"].readers == sorted([_user_of(misc), _group_of(misc), "public"])


def test_the_acl_file_and_links_to_it_are_not_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path)
    (tmp_path / "acl.toml").write_text(RULES, encoding="utf-8")
    (tmp_path / "rules-link.toml").symlink_to(tmp_path / "acl.toml")
    monkeypatch.chdir(tmp_path)  # a relative acl_file is taken from the current directory

    connector = FilesystemConnector(FilesystemConfig(root=tmp_path, acl_file=Path("acl.toml")))
    items = _items(connector)

    assert "acl.toml" not in items and "rules-link.toml" not in items
    assert items["notes.md"].readers == ["public"]
    assert connector.errors == []


def test_the_acl_file_is_read_again_for_every_listing(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _tree(root)
    rules = tmp_path / "acl.toml"
    rules.write_text(RULES, encoding="utf-8")
    connector = FilesystemConnector(FilesystemConfig(root=root, acl_file=rules))
    first = _items(connector)

    rules.write_text('[[rules]]\nglob = "misc.txt"\nreaders = ["user:ann"]\n', encoding="utf-8")
    second = _items(connector, _known(first))

    assert second["misc.txt"].readers == ["user:ann"]
    assert second["notes.md"].readers is None
    assert second["misc.txt"].content_hash == first["misc.txt"].content_hash


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[[rules]]\nglob = "a/*"\nreaders = ["public"]\n\n[[rules]]\nglob = "b/*"\nreaders = ["group:hr", "hr"]\n',
         r"\[\[rules\]\] #2 \(glob 'b/\*'\): reader 'hr' is malformed"),
        ('[[rules]]\nreaders = ["public"]\n', r"\[\[rules\]\] #1: needs a non-empty `glob`"),
        ('[[rules]]\nglob = "a/*"\n', r"\[\[rules\]\] #1 \(glob 'a/\*'\): needs `readers`"),
        ('[[rules]]\nglob = "a/*"\nreaders = "group:hr"\n', r"#1 .*must be a list of principals"),
        ('[[rules]]\nglob = "a/*"\nreader = ["group:hr"]\n', r"#1: unknown key\(s\) \['reader'\]"),
        ('[[rule]]\nglob = "a/*"\nreaders = ["group:hr"]\n', r"unknown key\(s\) \['rule'\]"),
        ('[[rules]\nglob = "a/*"\n', "not valid TOML"),
    ],
    ids=["bad-principal", "no-glob", "no-readers", "readers-not-list", "unknown-rule-key", "unknown-key", "syntax"],
)
def test_a_malformed_acl_file_fails_the_listing(tmp_path: Path, content: str, expected: str) -> None:
    _write(tmp_path / "docs", "a.txt", "a")
    rules = tmp_path / "acl.toml"
    rules.write_text(content, encoding="utf-8")
    connector = FilesystemConnector(FilesystemConfig(root=tmp_path / "docs", acl_file=rules))
    with pytest.raises(ConnectorError, match=expected) as caught:
        next(connector.items({}))
    assert str(rules) in str(caught.value)


def test_a_missing_acl_file_fails_the_listing(tmp_path: Path) -> None:
    _write(tmp_path / "docs", "a.txt", "a")
    connector = FilesystemConnector(FilesystemConfig(root=tmp_path / "docs", acl_file=tmp_path / "nope.toml"))
    with pytest.raises(ConnectorError, match=f"{tmp_path / 'nope.toml'}: cannot read"):
        list(connector.items({}))


# --- SQL: readers_column ---

SQL_ROWS = [
    (1, "json array", '["group:hr", "user:ann"]'),
    (2, "comma list", "user:bob, group:ops"),
    (3, "null readers", None),
    (4, "blank readers", ""),
    (5, "bad principal", "group:hr, not a principal"),
    (6, "broken json", '["group:hr"'),
    (7, "not strings", '["user:ann", 3]'),
]


def _database(tmp_path: Path, rows=SQL_ROWS) -> str:
    url = f"sqlite:///{tmp_path / 'docs.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, acl TEXT, updated_at TEXT)"))
        connection.execute(
            text("INSERT INTO docs VALUES (:id, :body, :acl, '2024-01-01 10:00:00')"),
            [{"id": i, "body": body, "acl": readers} for i, body, readers in rows],
        )
    engine.dispose()
    return url


def _execute(url: str, statement: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


def _sql(url: str, **overrides) -> SQLConnector:
    return SQLConnector(SQLConfig(**{
        "url": url, "query": "SELECT id, body, acl, updated_at FROM docs", "id_column": "id",
        "text_columns": ["body"], "readers_column": "acl", **overrides,
    }))  # fmt: skip


@pytest.mark.parametrize("incremental", [False, True], ids=["full", "updated-at"])
def test_sql_readers_column_values(tmp_path: Path, incremental: bool) -> None:
    connector = _sql(_database(tmp_path), updated_at_column="updated_at" if incremental else None)
    items = _items(connector)

    assert {doc: item.readers for doc, item in items.items()} == {
        "1": ["group:hr", "user:ann"],
        "2": ["group:ops", "user:bob"],
        "3": None,
        "4": [],
    }
    assert connector.keep == {"5", "6", "7"}
    reasons = dict(connector.errors)
    assert set(reasons) == {"5", "6", "7"}
    assert "readers column 'acl'" in reasons["5"] and "'not a principal' is malformed" in reasons["5"]
    assert "not a JSON array" in reasons["6"]
    assert "3" in reasons["7"]


def test_sql_readers_are_not_part_of_the_content_hash(tmp_path: Path) -> None:
    url = _database(tmp_path)
    connector = _sql(url)
    before = _items(connector)["1"]
    _execute(url, "UPDATE docs SET acl = 'user:ann' WHERE id = 1")
    after = _items(connector)["1"]
    assert after.readers == ["user:ann"]
    assert after.content_hash == before.content_hash


def test_sql_incremental_pull_sees_a_readers_change_without_an_updated_at_bump(tmp_path: Path) -> None:
    url = _database(tmp_path)
    connector = _sql(url, updated_at_column="updated_at")
    first = _items(connector)
    _execute(url, "UPDATE docs SET acl = '[\"user:carol\"]' WHERE id = 1")
    _execute(url, "UPDATE docs SET acl = 'user:carol, nonsense here' WHERE id = 2")

    again = _items(connector, _known(first))

    assert not again["1"].has_body  # skipped as unchanged by updated-at, yet with its current readers
    assert again["1"].readers == ["user:carol"]
    assert again["1"].content_hash == first["1"].content_hash
    assert again["3"].readers is None and again["4"].readers == []
    assert "2" not in again and {"2", "5", "6", "7"} <= connector.keep
    assert "2" in dict(connector.errors)


def test_sql_missing_readers_column_fails_the_run(tmp_path: Path) -> None:
    connector = _sql(_database(tmp_path), query="SELECT id, body FROM docs")
    with pytest.raises(ConnectorError, match="acl"):
        list(connector.items({}))


# --- end to end through the pipeline ---


def test_posix_readers_reach_search_and_a_chmod_updates_them_without_embedding(tmp_path: Path, embedder) -> None:
    docs = tmp_path / "docs"
    lunch = _write(docs, "lunch.txt", "The cafeteria serves lunch at noon on every weekday.", 0o644)
    salary = _write(docs, "salary.txt", "The salary review meeting for the team is scheduled in March.", 0o600)
    me, stranger = _user_of(salary), "user:ragline-test-stranger"
    connector = FilesystemConnector(FilesystemConfig(root=docs, permissions="posix"))

    with ragline.open(tmp_path / "store", embedder=embedder, retrieval={"rerank": "none"}) as rag:

        def visible(principal: str) -> set[str]:
            hits = rag.retrieve("lunch and salary meeting", principals=[principal], rerank=False)
            return {hit.document_id for hit in hits}

        report = rag.ingest(connector)
        assert (report.added, report.failed) == (2, 0), report
        assert visible(me) == {"lunch.txt", "salary.txt"}
        assert visible(stranger) == {"lunch.txt"}

        os.chmod(salary, 0o644)
        os.chmod(lunch, 0o600)
        report = rag.ingest(connector)
        assert report.permissions_updated == 2 and report.chunks_embedded == 0, report
        assert (report.unchanged, report.failed) == (2, 0)
        assert visible(stranger) == {"salary.txt"}
        assert visible(me) == {"lunch.txt", "salary.txt"}

        os.chmod(salary, 0o600)
        report = rag.ingest(connector)
        assert report.permissions_updated == 1 and report.chunks_embedded == 0, report
        assert visible(stranger) == set()

        # An ACL file that cannot be used fails the run and deletes nothing.
        (tmp_path / "acl.toml").write_text('[[rules]]\nglob = "*"\nreaders = ["everyone"]\n', encoding="utf-8")
        broken = FilesystemConnector(FilesystemConfig(root=docs, permissions="posix", acl_file=tmp_path / "acl.toml"))
        report = rag.ingest(broken)
        assert report.failed == 1 and report.deleted == 0 and "#1" in report.errors[0].error
        assert visible(me) == {"lunch.txt", "salary.txt"}
