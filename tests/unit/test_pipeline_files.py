"""Pipeline and prompt files are read defensively (issue #12, item 6): no YAML anchors or
aliases (a few hundred bytes of nested aliases expand exponentially), and a size cap."""

from __future__ import annotations

import json

import pytest
import yaml

from ragline.pipelines.pipeline import MAX_PIPELINE_BYTES, Pipeline, PipelineError, load_pipeline
from ragline.pipelines.prompts import MAX_PROMPT_BYTES, PromptError, PromptRegistry, find_prompt
from ragline.pipelines.steps import Retrieve, Synthesize

# Each level is a parallel step running the previous one twice: small enough that a
# regression loads it at once (14 retrieve steps), yet the shape of a "billion laughs".
LAUGHS = """\
name: laughs
steps:
  - &p1 {kind: parallel, branches: [[{kind: retrieve}], [{kind: retrieve}]]}
  - &p2 {kind: parallel, branches: [[*p1], [*p1]]}
  - &p3 {kind: parallel, branches: [[*p2], [*p2]]}
  - kind: synthesize
"""

PLAIN = "name: plain\nsteps:\n  - kind: retrieve\n    top_k: 8\n  - kind: synthesize\n"


def _retrieves(steps) -> int:
    """Retrieve steps, counting those inside parallel branches."""
    count = 0
    for step in steps:
        if step.kind == "parallel":
            count += sum(_retrieves(branch) for branch in step.branches)
        else:
            count += step.kind == "retrieve"
    return count


def test_alias_bomb_is_refused_at_its_first_anchor(tmp_path) -> None:
    expanded = Pipeline.from_dict(yaml.safe_load(LAUGHS))  # what a plain safe_load would hand on
    assert _retrieves(expanded.steps) == 2 + 4 + 8
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(LAUGHS)
    with pytest.raises(PipelineError, match=r"laughs\.yaml, line 3: anchors and aliases are not allowed"):
        load_pipeline(bomb)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: one\nsteps:\n  - &r {kind: retrieve}\n  - *r\n  - kind: synthesize\n", 3),  # one alias
        ("name: one\nsteps:\n  - kind: retrieve\n  - &s {kind: synthesize}\n", 4),  # an anchor alone
        ("name: one\nsteps:\n  - kind: retrieve\n  - *nowhere\n", 4),  # an alias to nothing
    ],
)
def test_any_anchor_or_alias_is_refused(tmp_path, text, line) -> None:
    path = tmp_path / "one.yml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=rf"one\.yml, line {line}: anchors and aliases are not allowed"):
        load_pipeline(path)


def test_normal_files_still_load_and_dump_writes_no_aliases(tmp_path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(PLAIN)
    assert load_pipeline(path).to_dict() == yaml.safe_load(PLAIN)

    shared = Retrieve(filters={"lang": "en"})  # one object twice: safe_dump would write &id001 / *id001
    pipeline = Pipeline(name="twice", steps=[{"kind": "parallel", "branches": [[shared], [shared]]}, Synthesize()])
    written = tmp_path / "twice.yaml"
    pipeline.dump(written)
    assert "&" not in written.read_text() and load_pipeline(written) == pipeline


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_pipeline_files_over_the_cap_are_refused(tmp_path, suffix) -> None:
    body = {
        ".yaml": PLAIN,
        ".toml": 'name = "big"\n[[steps]]\nkind = "retrieve"\n[[steps]]\nkind = "synthesize"\n',
        ".json": json.dumps({"name": "big", "steps": [{"kind": "retrieve"}, {"kind": "synthesize"}]}),
    }[suffix]
    padding = " " if suffix == ".json" else "#"  # JSON has no comments, but allows trailing whitespace
    path = tmp_path / f"big{suffix}"
    path.write_text(body + "\n" + padding * (MAX_PIPELINE_BYTES - len(body) - 1))
    assert [s.kind for s in load_pipeline(path).steps] == ["retrieve", "synthesize"]  # exactly at the cap
    path.write_text(path.read_text() + padding)
    with pytest.raises(PipelineError) as excinfo:
        load_pipeline(path)
    assert str(excinfo.value) == (
        f"pipeline file {path} is {MAX_PIPELINE_BYTES + 1} bytes; the limit is {MAX_PIPELINE_BYTES} bytes"
    )


GREET = "{% block user %}Hello, {{ who }}!{% endblock %}\n"


def test_prompt_files_over_the_cap_are_refused(tmp_path) -> None:
    path = tmp_path / "greet.j2"
    path.write_text(GREET + "x" * (MAX_PROMPT_BYTES - len(GREET)))  # text outside blocks is ignored
    registry = PromptRegistry(tmp_path)
    prompt = registry.get("greet")
    assert prompt.render(who="Ada")[0].content == "Hello, Ada!"
    path.write_text(path.read_text() + "x")
    expected = f"prompt file {path} is {MAX_PROMPT_BYTES + 1} bytes; the limit is {MAX_PROMPT_BYTES} bytes"
    with pytest.raises(PromptError) as excinfo:
        find_prompt("greet", tmp_path)  # the user's own broken file: no fallback to a built-in
    assert str(excinfo.value) == expected

    stored = tmp_path / ".versions" / "greet" / f"{prompt.hash}.j2"  # stored versions are read the same way
    stored.write_text(path.read_text())
    path.unlink()
    with pytest.raises(PromptError, match=f"prompt file {stored} is {MAX_PROMPT_BYTES + 1} bytes"):
        registry.get(f"greet@{prompt.hash}")
