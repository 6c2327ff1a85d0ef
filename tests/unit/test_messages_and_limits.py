"""Messages that say what to fix, and limits that keep one input from costing a query its
CPU or memory: unset API key variables are named, `--filter`/`--top-k`/`--limit` mistakes
are usage errors, `ragline traces` finds the configured store, the SSRF refusal names the
setting that allows a host; questions, prompt renders and manifest labels are bounded."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib

import pytest
from protocol_servers import API_KEY, AnthropicHandler, OpenAIHandler, ProtocolServer, question

from ragline.access.principals import Viewer
from ragline.cli import main, parse_filters
from ragline.config import RaglineConfig
from ragline.connectors.ssrf import UnsafeURL, resolve_safe
from ragline.connectors.web import WebConfig, WebConnector
from ragline.llm.base import ProviderError
from ragline.llm.config import LLMConfig, ModelConfig
from ragline.llm.fake import FakeProvider
from ragline.llm.stack import make_provider, missing_key, model_configs
from ragline.models import Citation
from ragline.pipelines.config import PromptsConfig, QueryConfig, check_question
from ragline.pipelines.context import StepContext
from ragline.pipelines.prompt_sandbox import MAX_OUTPUT_CHARS
from ragline.pipelines.prompts import Prompt, PromptError, PromptRegistry, builtin_prompt
from ragline.pipelines.runner import PipelineRunner
from ragline.pipelines.steps import QueryState, Respond
from ragline.tracing.config import TracingConfig
from ragline.tracing.setup import setup_tracing

KEY_VAR = "RAGLINE_TEST_UNSET_API_KEY"
REQUEST = question(max_tokens=8)


def _exit(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def _raised(call) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call()
    return caught.value


# --- 13a: an unset api_key_env is named ----------------------------------------------------


@pytest.fixture
def openai_server():
    with ProtocolServer(OpenAIHandler, FakeProvider(["Paris."], name="backend", model="smollm2"), API_KEY) as server:
        yield server


def test_a_401_without_a_key_names_the_unset_llm_api_key_env(openai_server, monkeypatch):
    monkeypatch.delenv(KEY_VAR, raising=False)
    config = RaglineConfig(llm={"provider": "openai", "model": "smollm2", "base_url": openai_server.base_url(),
                                "api_key_env": KEY_VAR})  # fmt: skip
    provider = make_provider(model_configs(config)[0], config.llm)
    for call in (lambda: provider.complete(REQUEST), lambda: list(provider.stream(REQUEST))):
        error = _raised(call)
        assert error.kind == "auth" and error.status == 401
        assert f"${KEY_VAR} is not set" in str(error)


def test_a_401_with_a_wrong_key_neither_claims_it_unset_nor_shows_it(openai_server, monkeypatch):
    monkeypatch.setenv(KEY_VAR, "sk-wrong-but-secret-0042")
    spec = ModelConfig(name="remote", provider="openai", model="smollm2", base_url=openai_server.base_url(),
                       api_key_env=KEY_VAR)  # fmt: skip
    error = _raised(lambda: make_provider(spec, LLMConfig()).complete(REQUEST))
    assert error.status == 401 and "is not set" not in str(error)
    assert "sk-wrong-but-secret-0042" not in str(error)  # the server echoes it back; we never do


def test_a_local_server_without_auth_needs_no_key(monkeypatch):
    """llama.cpp server: no auth, the default llm.api_key_env unset, and it just answers."""
    monkeypatch.delenv(KEY_VAR, raising=False)
    with ProtocolServer(OpenAIHandler, FakeProvider(["Paris."], name="backend", model="smollm2"), None) as server:
        spec = ModelConfig(name="local", provider="openai", model="smollm2", base_url=server.base_url(),
                           api_key_env=KEY_VAR)  # fmt: skip
        assert make_provider(spec, LLMConfig()).complete(REQUEST).text == "Paris."


def test_anthropic_without_its_key_fails_before_sending_and_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_VAR, raising=False)
    with ProtocolServer(AnthropicHandler, FakeProvider(["Paris."], name="backend", model="claude"), API_KEY) as server:
        spec = ModelConfig(name="claude", provider="anthropic", model="claude", base_url=server.base_url(),
                           api_key_env=KEY_VAR)  # fmt: skip
        provider = make_provider(spec, LLMConfig())
        calls = (
            lambda: provider.complete(REQUEST),
            lambda: list(provider.stream(REQUEST)),
            lambda: asyncio.run(provider.acomplete(REQUEST)),
        )
        for call in calls:
            error = _raised(call)
            assert error.kind == "auth" and f"${KEY_VAR} is not set" in str(error)
        assert server.requests == []  # refused here, not by the server


def test_the_missing_key_message_names_every_place_looked(tmp_path):
    empty = tmp_path / "key"
    empty.write_text("\n")
    both = ModelConfig(name="m", provider="openai", model="x", api_key_env="MY_KEY", api_key_file=empty)
    assert missing_key(both) == f"$MY_KEY is not set and {empty} is empty"
    assert "api_key_env" in missing_key(ModelConfig(name="m", provider="anthropic", model="x"))


# --- 13b/c: --filter, --top-k and --limit mistakes are usage errors -------------------------


@pytest.mark.parametrize("spec", ["=v", ">=3", "page_number>=", "page_number<", "a=", "a>>3", "a=>3", "a=,", "nokey"])
@pytest.mark.parametrize("command", ["retrieve", "query"])
def test_a_malformed_filter_is_a_usage_error_naming_it(capsys, tmp_path, command, spec):
    code, out, err = _exit(capsys, command, "q", "--filter", spec, "--store", str(tmp_path / "s"))
    assert code == 2 and out == ""
    assert spec in err and "accepted forms" in err and "invalid JSON path" not in err


def test_a_malformed_filter_with_json_is_one_usage_object(capsys, tmp_path):
    code, out, _ = _exit(capsys, "retrieve", "q", "--filter", ">=3", "--store", str(tmp_path / "s"), "--json")
    (line,) = out.splitlines()
    error = json.loads(line)["error"]
    assert code == 2 and error["kind"] == "usage" and "'>=3'" in error["message"]


def test_well_formed_filters_parse_as_before():
    specs = ["page_number>=3", "page_number<9", "title=*", "document_id=a.md,b.md",
             "published<2026-01-01T00:00:00", "source=file:///docs?a=b", "lang = en"]  # fmt: skip
    assert parse_filters(specs) == {
        "page_number": {"gte": 3, "lt": 9}, "title": {"exists": True}, "document_id": ["a.md", "b.md"],
        "published": {"lt": "2026-01-01T00:00:00"}, "source": "file:///docs?a=b", "lang": "en",
    }  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["retrieve", "q", "--top-k", "9223372036854775807"],
        ["query", "q", "--top-k", "1001"],
        ["traces", "list", "--limit", "9223372036854775808"],
    ],
)
def test_huge_counts_are_usage_errors_not_overflow_tracebacks(capsys, tmp_path, args):
    code, _, err = _exit(capsys, *args, "--store", str(tmp_path / "s"))
    assert code == 2 and args[-2] in err and "Traceback" not in err


def test_eval_rerank_depth_has_the_same_cap(capsys, tmp_path):
    files = []
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        (tmp_path / name).write_text("")
        files.append(str(tmp_path / name))
    code, _, err = _exit(capsys, "eval", "retrieval", "--corpus", files[0], "--queries", files[1], "--qrels", files[2],
                         "--rerank-top-n", "9223372036854775807", "--store", str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and "--rerank-top-n" in err


# --- 13d: `ragline traces` reads store.path from the config --------------------------------


@pytest.fixture
def configured_store(tmp_path, monkeypatch) -> tuple[str, str]:
    """A store holding one trace, named only by ragline.toml's store.path."""
    store = tmp_path / "elsewhere"
    tracing = setup_tracing(TracingConfig(), store)
    with tracing.span("query") as root:
        pass
    tracing.shutdown()
    (tmp_path / "ragline.toml").write_text(f"[store]\npath = {json.dumps(str(store))}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGLINE_STORE__PATH", raising=False)
    return f"{root.get_span_context().trace_id:032x}", str(tmp_path / "ragline.toml")


def test_traces_list_and_show_use_the_config_store_path(capsys, configured_store, tmp_path):
    trace_id, config = configured_store
    for extra in ([], ["--config", config]):
        code, out, _ = _exit(capsys, "traces", "list", "--json", *extra)
        assert code == 0 and [t["trace_id"] for t in json.loads(out)["traces"]] == [trace_id]
    code, out, _ = _exit(capsys, "traces", "show", trace_id[:8], "--json", "--config", config)
    assert code == 0 and json.loads(out)["summary"]["trace_id"] == trace_id
    code, _, _ = _exit(capsys, "traces", "export", trace_id, "--json", "-o", str(tmp_path / "t.json"))
    assert code == 0 and json.loads((tmp_path / "t.json").read_text())["summary"]["trace_id"] == trace_id


def test_traces_store_option_overrides_the_config(capsys, configured_store, tmp_path):
    _, config = configured_store
    code, out, _ = _exit(capsys, "traces", "list", "--json", "--config", config, "--store", str(tmp_path / "empty"))
    assert code == 1 and json.loads(out)["error"]["kind"] == "not_found"


# --- 13e: the SSRF refusal names the setting that allows the host ---------------------------


def test_the_ssrf_refusal_names_the_setting_and_following_it_works():
    url = "http://127.0.0.1:9/page"  # refused before any connection is attempted
    web = WebConnector(WebConfig(urls=[url], rate_limit_per_second=1000.0))
    assert list(web.items({})) == []
    reason = dict(web.errors)[url]
    assert "allow_private_addresses = true" in reason and "[[sources]]" in reason
    snippet = re.search(r"allowed_hosts = \[[^\]]*\]", reason).group(0)
    allowed = WebConfig(urls=[url], **tomllib.loads(snippet))  # the advice, pasted as given
    assert resolve_safe("http", "127.0.0.1", 9, allowed_hosts=allowed.allowed_hosts) == "127.0.0.1"
    with pytest.raises(UnsafeURL):
        resolve_safe("http", "127.0.0.1", 9)


# --- 14a: an over-long question is refused wherever a query enters the runner ---------------


def _runner(limit: int) -> PipelineRunner:
    context = StepContext(
        retriever=None, llm=FakeProvider(), prompt=builtin_prompt, query=QueryConfig(max_question_chars=limit),
        model=LLMConfig(), prompts=PromptsConfig(), viewer=Viewer.unrestricted(),
    )  # fmt: skip
    return PipelineRunner(context, setup_tracing(TracingConfig(enabled=False)))


def _final(items) -> QueryState:
    return list(items)[-1]


def test_every_runner_entry_refuses_a_question_over_the_limit():
    runner, steps = _runner(20), [Respond(text="fixed")]
    entries = {
        "run": lambda state: runner.run(steps, state),
        "arun": lambda state: asyncio.run(runner.arun(steps, state)),
        "stream": lambda state: _final(runner.stream(steps, state)),
    }
    for name, enter in entries.items():
        assert enter(QueryState(question="q" * 20)).answer.text == "fixed", name
        with pytest.raises(ValueError, match=r"21 characters long; the limit is 20 \(query.max_question_chars\)"):
            enter(QueryState(question="q" * 21))


def test_check_question_and_its_default():
    assert QueryConfig().max_question_chars == 8000
    check_question("x" * 8000, 8000)
    with pytest.raises(ValueError, match="query.max_question_chars"):
        check_question("x" * 8001, 8000)


# --- 14b: prompt renders are bounded and every failure is a PromptError --------------------


def _render(body: str, **variables) -> str:
    return Prompt("limits", "{% block user %}" + body + "{% endblock %}").render(**variables)[0].content


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "loop iterations and calls"),
        ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(20) }}", "calls"),
        ("{{ range(10**9)|length }}", "range(1000000000) is longer"),
        ("{{ 2 ** 100000 }}", "4096-bit"),
        ("{{ 'x' * 600000 }}{{ 'y' * 600000 }}", f"longer than {MAX_OUTPUT_CHARS} characters"),
        ("{% set ns = namespace(s='x') %}{% for i in range(22) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "grew"),
        ("{% set ns = namespace(s='x') %}{% for i in range(22) %}"
         + "{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}", "grew"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ items.pop(9) }}", "IndexError"),
    ],
)
def test_a_render_over_a_limit_or_failing_is_a_prompt_error_naming_the_prompt(body, says):
    with pytest.raises(PromptError, match=r"prompt limits@[0-9a-f]{12}") as caught:
        _render(body, items=[1, 2])
    assert says in str(caught.value)


def test_ordinary_templates_and_the_builtin_prompt_stay_within_the_limits():
    body = "{{ 'a' ~ 'b' }} {{ 2 ** 10 }} {{ 'ab' * 2 }} {{ range(3)|list }} {{ '%d' % 7 }} {% for i in [1, 2] %}{{ i }}{% endfor %}"
    assert _render(body) == "ab 1024 abab [0, 1, 2] 7 12"
    sources = [Citation(n=i, document_id=f"d{i}.md", chunk_id=f"c{i}", text="t" * 1200) for i in range(1, 801)]
    system, user = builtin_prompt("synthesis").render(question="q", sources=sources)
    assert system.content.count("[800]") == 1 and user.content == "q"


# --- 14c: manifest label targets are checked before they become paths ----------------------


def _registry(tmp_path, manifest: dict) -> PromptRegistry:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "evil.j2").write_text("{% block user %}outside .versions{% endblock %}")
    return PromptRegistry(folder)


def test_a_label_that_is_no_hash_is_refused_naming_manifest_json(tmp_path):
    registry = _registry(tmp_path, {"synthesis": {"prod": "../../evil"}})  # resolves to prompts/evil.j2
    with pytest.raises(PromptError, match=r"manifest\.json: label 'prod' of prompt 'synthesis' is '\.\./\.\./evil'"):
        registry.get("synthesis@prod")


def test_a_manifest_prompt_name_that_is_no_name_is_refused(tmp_path):
    registry = _registry(tmp_path, {"../up": {"prod": "0123456789ab"}})
    with pytest.raises(PromptError, match=r"manifest\.json: '\.\./up' is not a valid prompt name"):
        registry.names()


def test_a_ray_address_without_the_ray_engine_is_a_usage_error(capsys, tmp_path):
    code, out, err = _exit(capsys, "ingest", str(tmp_path), "--address", "127.0.0.1:6379", "--store", str(tmp_path / "s"))
    assert code == 2 and out == ""
    assert "--address" in err and "--engine ray" in err
