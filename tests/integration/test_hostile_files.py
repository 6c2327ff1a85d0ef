"""Hostile and odd input on the filesystem: a file swapped for a link to a secret outside the
root while ingest runs, file names that are not UTF-8, questions with undecodable bytes,
a FIFO given as the source. Real files, the real connector, loader and CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import ROOT

import ragline
from ragline.connectors.filesystem import FilesystemConfig, FilesystemConnector
from ragline.ingest.loading import load_item
from ragline.ingest.parsing import ParseError

SECRET = "board-salaries-7f3a9"


def _swapper(target: Path, outside: Path, stop: threading.Event) -> None:
    """Replace `target` by a link to `outside` and back, as fast as it can, until told to stop."""
    link = target.with_name(".swap-link")
    plain = target.with_name(".swap-plain")
    while not stop.is_set():
        link.unlink(missing_ok=True)
        link.symlink_to(outside)
        os.replace(link, target)  # now a link out of the root
        plain.write_text("An ordinary note about the canteen menu.\n")
        os.replace(plain, target)  # a regular file again


def test_a_file_swapped_for_an_outside_link_never_reaches_the_index(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside.txt"
    root.mkdir()
    outside.write_text(f"{SECRET}\n")
    target = root / "note.txt"
    target.write_text("An ordinary note about the canteen menu.\n")
    for i in range(5):
        (root / f"other{i}.txt").write_text(f"Other note {i}.\n")
    connector = FilesystemConnector(FilesystemConfig(root=root))
    stop = threading.Event()
    swapper = threading.Thread(target=_swapper, args=(target, outside, stop), daemon=True)
    swapper.start()
    parsed_texts, refused = [], 0
    try:
        for _ in range(60):  # bounded: each round lists, hashes and parses the whole root
            for item in connector.items({}):
                try:
                    document = load_item(item, max_bytes=1 << 20)
                except ParseError:
                    refused += 1  # swapped between listing and parsing: a failed document
                    continue
                parsed_texts.append(" ".join(e.text for e in document.elements))
    finally:
        stop.set()
        swapper.join(timeout=10)
    assert not any(SECRET in text for text in parsed_texts)
    assert len(parsed_texts) >= 60 * 5  # the untouched files always parse
    assert all(error[0] == "note.txt" for error in connector.errors)  # only the swapped file ever fails


def test_names_and_questions_with_undecodable_bytes(tmp_path, embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9-menu.txt")).write_text("The canteen serves hedgehog-shaped bread rolls.\n")
    (folder / "plain.txt").write_text("Quarterly budget notes.\n")
    with ragline.open(tmp_path / "store", embedder=embedder, retrieval={"rerank": "none"}) as rag:
        report = rag.ingest(folder)
        assert report.added == 2 and report.failed == 0, report.errors
        hits = rag.retrieve("hedgehog bread " + os.fsdecode(b"\xff"), top_k=1)
        assert hits[0].document_id == "caf\\xe9-menu.txt"
        json.dumps([h.model_dump() for h in hits], ensure_ascii=False).encode("utf-8")  # valid UTF-8 all through
    run = subprocess.run(
        [sys.executable, "-m", "ragline", "retrieve", b"hedgehog \xff bread", "--top-k", "1", "--json",
         "--store", str(tmp_path / "store")],
        capture_output=True, cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    (hit,) = json.loads(run.stdout.decode("utf-8"))["hits"]  # strict UTF-8 decode
    assert hit["document_id"] == "caf\\xe9-menu.txt"


def test_a_fifo_as_the_source_is_a_failure_not_a_silent_success(tmp_path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run = subprocess.run(
        [sys.executable, "-m", "ragline", "ingest", str(fifo), "--store", str(tmp_path / "store"), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    (error,) = json.loads(run.stdout)["errors"]
    assert "neither a regular file nor a directory" in error["error"]
