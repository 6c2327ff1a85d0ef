import hashlib
import json

import pytest
from typer.testing import CliRunner

from ragline.cli_prompts import prompts_app
from ragline.models import Citation
from ragline.pipelines.prompts import (
    BUILTIN_DIR,
    Prompt,
    PromptError,
    PromptRegistry,
    builtin_prompt,
    content_hash,
)

PROMPT_VERSION = builtin_prompt("synthesis").version


def build_messages(question, sources, prompt=None):
    return (prompt or builtin_prompt("synthesis")).render(question=question, sources=sources)

GREET = """{#
description: Says hello.
variables: who
#}
{% block system %}You greet {{ who }}.{% endblock %}
{% block user %}Hello, {{ who }}!{% endblock %}
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "greet.j2").write_text(GREET)
    return tmp_path


def _edit(folder, new_text="Hi, {{ who }}!"):
    (folder / "greet.j2").write_text(GREET.replace("Hello, {{ who }}!", new_text))


def test_version_is_the_content_hash_with_normalized_line_endings(folder):
    prompt = PromptRegistry(folder).get("greet")
    assert prompt.hash == hashlib.sha256(GREET.encode()).hexdigest()[:12]
    assert prompt.version == f"greet@{prompt.hash}"
    assert content_hash(GREET.replace("\n", "\r\n")) == prompt.hash
    assert (prompt.description, prompt.variables, prompt.roles) == ("Says hello.", ("who",), ("system", "user"))


def test_render_round_trip(folder):
    messages = PromptRegistry(folder).get("greet").render(who="Ada")
    assert [(m.role, m.content) for m in messages] == [("system", "You greet Ada."), ("user", "Hello, Ada!")]


def test_missing_or_undefined_variables_name_the_prompt_and_variable(folder):
    prompt = PromptRegistry(folder).get("greet")
    with pytest.raises(PromptError, match=rf"{prompt.version} needs variable\(s\) who"):
        prompt.render()
    undeclared = Prompt("x", "{% block user %}{{ who }} {{ whom }}{% endblock %}")
    with pytest.raises(PromptError, match=r"x@\w+: 'whom' is undefined"):
        undeclared.render(who="Ada")


def test_bad_files_give_clear_errors():
    with pytest.raises(PromptError, match="line 1"):
        Prompt("x", "{% block user %}{{ oops {% endblock %}")
    with pytest.raises(PromptError, match="blocks must be named"):
        Prompt("x", "{% block intro %}hi{% endblock %}")
    with pytest.raises(PromptError, match="header line 'author: me'"):
        Prompt("x", "{# author: me #}{% block user %}hi{% endblock %}")


def test_sandbox_blocks_python_internals():
    prompt = Prompt("x", "{% block user %}{{ who.__class__.__mro__ }}{% endblock %}")
    with pytest.raises(PromptError, match=r"x@\w+: access to attribute '__class__' of 'str' object is unsafe"):
        prompt.render(who="Ada")


def test_editing_changes_the_version_and_labels_keep_the_old_content(folder):
    registry = PromptRegistry(folder)
    old, previous = registry.label("greet", "production")
    assert previous is None
    _edit(folder)
    new = registry.get("greet")
    assert new.version != old.version
    assert registry.get("greet@production").render(who="Ada")[1].content == "Hello, Ada!"
    assert registry.get(f"greet@{old.hash[:6]}").source == GREET
    assert registry.get(new.version).render(who="Ada")[1].content == "Hi, Ada!"
    assert json.loads((folder / "manifest.json").read_text()) == {"greet": {"production": old.hash}}
    # a version that was used once stays resolvable after the file changes again
    _edit(folder, "Hey, {{ who }}!")
    assert registry.get(new.version).source == new.source
    assert registry.label("greet", "production")[1] == old.version


def test_concurrent_labelling_loses_no_label(folder):
    """Each call reads, changes and rewrites manifest.json; the lock keeps every label."""
    from concurrent.futures import ThreadPoolExecutor

    labels = [f"team{i}" for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda label: PromptRegistry(folder).label("greet", label), labels))
    version = PromptRegistry(folder).get("greet").hash
    assert json.loads((folder / "manifest.json").read_text()) == {"greet": dict.fromkeys(labels, version)}


def test_unknown_and_ambiguous_refs(folder):
    registry = PromptRegistry(folder)
    registry.label("greet", "production")
    with pytest.raises(PromptError, match="no prompt 'nope'"):
        registry.get("nope")
    with pytest.raises(PromptError, match=r"no label 'canary' \(labels: production\)"):
        registry.get("greet@canary")
    with pytest.raises(PromptError, match="no version 'ffffffff'"):
        registry.get("greet@ffffffff")
    hashes = {registry.get("greet").hash}
    for n in range(40):  # until two stored versions share a first hex digit
        _edit(folder, f"Hello {n}")
        hashes.add(registry.get("greet").hash)
        firsts = [h[0] for h in hashes]
        if len(set(firsts)) < len(firsts):
            break
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(PromptError, match=f"greet@{shared} is ambiguous"):
        registry.get(f"greet@{shared}")
    with pytest.raises(PromptError, match="looks like a hash prefix"):
        registry.label("greet", "beef")
    with pytest.raises(PromptError, match="not a valid prompt name"):
        registry.get("../etc@x")


def test_edited_snapshot_is_refused(folder):
    registry = PromptRegistry(folder)
    prompt, _ = registry.label("greet", "production")
    _edit(folder)
    (folder / ".versions" / "greet" / f"{prompt.hash}.j2").write_text("{% block user %}tampered{% endblock %}")
    with pytest.raises(PromptError, match="was edited"):
        registry.get("greet@production")


# -- the built-in synthesis prompt ---------------------------------------------------------

OLD_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the question in one or two sentences using only the "
    "sources below. After each fact, write the number of its source in square brackets, for "
    "example [1]. If the sources do not contain the answer, say that you don't know."
)


def _old_build_messages(question, sources):
    """The construction ragline used before the registry, copied verbatim."""

    def label(source):
        title = source.metadata.get("title") or source.document_id
        page = source.metadata.get("page_number")
        return f"{title}, page {page}" if page else str(title)

    context = "\n\n".join(f"[{s.n}] ({label(s)}) {s.text}" for s in sources)
    return [("system", f"{OLD_SYSTEM_PROMPT}\n\nSources:\n\n{context}"), ("user", question)]


SOURCES = [
    Citation(n=1, document_id="a.md", chunk_id="a1", text="Leave is 25 days.\n\nSee {{ hr }}.\n",
             metadata={"title": "Handbook", "page_number": 3}),
    Citation(n=2, document_id="b.md", chunk_id="b1", text="Buddies for 3 months.", metadata={}),
    Citation(n=3, document_id="c.md", chunk_id="c1", text="", metadata={"title": "", "page_number": 0}),
    Citation(n=4, document_id="d.md", chunk_id="d1", text="x", metadata={"title": 7, "page_number": "ii"}),
]  # fmt: skip


@pytest.mark.parametrize("sources", [SOURCES, SOURCES[:1], []])
@pytest.mark.parametrize("question", ["How much leave?", "  spaced {{ q }}\n"])
def test_builtin_synthesis_prompt_reproduces_the_old_messages(question, sources):
    messages = build_messages(question, sources)
    assert [(m.role, m.content) for m in messages] == _old_build_messages(question, sources)


def test_builtin_prompt_is_package_data_and_versions_the_answers():
    assert (BUILTIN_DIR / "synthesis.j2").is_file()
    assert PROMPT_VERSION == "synthesis@" + content_hash((BUILTIN_DIR / "synthesis.j2").read_text())


def test_a_prompts_folder_can_override_synthesis(tmp_path):
    (tmp_path / "synthesis.j2").write_text(
        "{% block system %}Cite {{ sources | length }} sources.{% endblock %}{% block user %}{{ question }}{% endblock %}"
    )
    messages = build_messages("Q?", SOURCES, PromptRegistry(tmp_path).get("synthesis"))
    assert [m.content for m in messages] == ["Cite 4 sources.", "Q?"]


# -- CLI -----------------------------------------------------------------------------------

runner = CliRunner()


def _cli(folder, *args):
    result = runner.invoke(prompts_app, [*args, "--dir", str(folder)])
    return result.exit_code, result.stdout


def _json(folder, *args):
    code, stdout = _cli(folder, *args, "--json")
    assert code == 0, stdout
    return json.loads(stdout)


def test_cli_label_list_show_diff(folder):
    first = _json(folder, "label", "greet", "production")
    old = first["version"]
    assert first == {"name": "greet", "label": "production", "version": old, "previous": None}
    _edit(folder)
    new = _json(folder, "show", "greet")["version"]
    assert _json(folder, "label", "greet", "staging")["version"] == new

    listed = _json(folder, "list")
    assert listed == {"prompts": [{
        "name": "greet", "version": new, "description": "Says hello.",
        "labels": {"production": old, "staging": new}, "versions": listed["prompts"][0]["versions"],
    }]}  # fmt: skip
    assert sorted(listed["prompts"][0]["versions"]) == sorted([old, new])  # oldest first, unless mtimes tie

    shown = _json(folder, "show", "greet@production")
    assert shown == {
        "name": "greet", "version": old, "hash": old.split("@")[1], "description": "Says hello.",
        "variables": ["who"], "roles": ["system", "user"], "labels": ["production"], "source": GREET,
    }  # fmt: skip

    diffed = _json(folder, "diff", "greet@production", "greet@staging")
    assert (diffed["from"], diffed["to"]) == (old, new)
    assert "-{% block user %}Hello, {{ who }}!{% endblock %}\n" in diffed["diff"]
    assert "+{% block user %}Hi, {{ who }}!{% endblock %}\n" in diffed["diff"]
    assert _json(folder, "diff", "greet@staging")["diff"] == ""  # default: against the current file

    code, stdout = _cli(folder, "diff", "greet@production")
    assert code == 0 and stdout.startswith(f"--- {old}\n+++ {new}\n")
    code, stdout = _cli(folder, "show", "greet@production")
    assert code == 0 and stdout == GREET
    code, stdout = _cli(folder, "list")
    assert code == 0 and "greet" in stdout and "production" in stdout


def test_cli_errors_exit_1_with_a_message(folder):
    result = runner.invoke(prompts_app, ["show", "greet@canary", "--dir", str(folder)])
    assert result.exit_code == 1
    assert "no label 'canary'" in result.stderr and result.stdout == ""
    assert _json(folder / "missing", "list") == {"prompts": []}
