"""With `--json`, every failure is exactly one JSON object on stdout, with the usual exit
codes: usage errors 2, everything else 1 (the message also goes to stderr)."""

from __future__ import annotations

import json

import pytest

from ragline.cli import main


def _run(capsys, *args: str) -> tuple[int, dict, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1, captured.out  # one object, nothing else
    return exited.value.code, json.loads(lines[0]), captured.err


def test_a_usage_error_is_json_with_exit_2(capsys) -> None:
    code, payload, stderr = _run(capsys, "retrieve", "q", "--top-k", "many", "--json")
    assert code == 2 and payload["error"]["kind"] == "usage" and "--top-k" in payload["error"]["message"]
    assert "--top-k" in stderr


def test_a_config_error_is_json_with_exit_1(capsys, tmp_path) -> None:
    bad = tmp_path / "ragline.toml"
    bad.write_text("[retrieval]\nmode = 'fuzzy'\n")
    code, payload, stderr = _run(capsys, "retrieve", "q", "--config", str(bad), "--store", str(tmp_path / "s"), "--json")
    assert code == 1 and payload["error"]["kind"] == "config"
    assert "retrieval.mode" in payload["error"]["message"] and "retrieval.mode" in stderr


def test_a_missing_trace_store_is_json(capsys, tmp_path) -> None:
    code, payload, _ = _run(capsys, "traces", "show", "abc", "--store", str(tmp_path), "--json")
    assert code == 1 and payload["error"]["kind"] == "not_found"


def test_a_missing_prompt_is_json(capsys, tmp_path) -> None:
    code, payload, _ = _run(capsys, "prompts", "show", "nope@prod", "--dir", str(tmp_path), "--json")
    assert code == 1 and payload["error"]["kind"] == "prompt"


def test_without_json_nothing_is_printed_on_stdout(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["retrieve", "q", "--top-k", "many"])
    assert exited.value.code == 2 and capsys.readouterr().out == ""
