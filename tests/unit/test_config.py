from pathlib import Path

import pytest

from ragline.config import ConfigError, load_config


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.store.kind == "edge"
    assert config.store.path == ".ragline"
    assert config.llm.provider == "llamacpp"


def test_toml_then_env_then_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ragline.toml").write_text(
        '[store]\npath = "from-toml"\ncollection = "docs"\n[llm]\nmax_tokens = 99\n'
    )
    config = load_config()
    assert (config.store.path, config.store.collection, config.llm.max_tokens) == ("from-toml", "docs", 99)

    monkeypatch.setenv("RAGLINE_LLM__MAX_TOKENS", "42")
    monkeypatch.setenv("RAGLINE_STORE__PATH", "from-env")
    config = load_config()
    assert (config.store.path, config.llm.max_tokens) == ("from-env", 42)
    assert config.store.collection == "docs"  # untouched TOML field survives the env override

    config = load_config(store={"path": "from-code"})
    assert (config.store.path, config.store.collection) == ("from-code", "docs")


def test_invalid_field_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[llm]\nmax_tokens = "lots"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(bad)
    message = str(excinfo.value)
    assert str(bad) in message and "llm.max_tokens" in message


def test_unknown_section_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[lmm]\nprovider = "openai"\n')
    with pytest.raises(ConfigError, match="lmm"):
        load_config(bad)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_toml_syntax_error_names_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[store\npath = 1\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_config(bad)


def test_models_chain_config_is_validated(tmp_path) -> None:
    config = tmp_path / "ragline.toml"
    config.write_text(
        '[[models]]\nname = "a"\nprovider = "openai"\nmodel = "m"\n\n'
        '[[models]]\nname = "a"\nprovider = "ollama"\nmodel = "n"\n'
    )
    with pytest.raises(ConfigError, match="repeated: a"):
        load_config(config)
    config.write_text('[[models]]\nname = "a"\nprovider = "anthropic"\n')
    with pytest.raises(ConfigError, match="model is required"):
        load_config(config)
    config.write_text(
        '[[models]]\nname = "a"\nprovider = "openai"\nmodel = "m"\napi_key_env = "MY_KEY"\n\n'
        '[reliability]\nfallback_on = ["server", "auth"]\n\n[reliability.breaker]\ncooldown = 5\n\n'
        '[budget]\nper_day_usd = 3.5\n'
    )
    loaded = load_config(config)
    assert loaded.models[0].api_key_env == "MY_KEY"
    assert loaded.reliability.fallback_on == {"server", "auth"} and loaded.reliability.breaker.cooldown == 5
    assert loaded.budget.per_day_usd == 3.5


# --- unknown keys inside sections (issue #12, item 5) ---


@pytest.mark.parametrize(
    ("toml", "section", "key", "hint"),
    [
        ("[budget]\nper_query_usd_max = 0.01\n", "budget", "per_query_usd_max", "did you mean `per_query_usd`?"),
        ('[[models]]\nname = "a"\nprovider = "openai"\nmodel = "m"\napi_key_evn = "X"\n',
         "models.0", "api_key_evn", "did you mean `api_key_env`?"),
        ('[store]\npaht = "x"\n', "store", "paht", "did you mean `path`?"),
        ("[reliability.breaker]\ncooldwn = 5\n", "reliability.breaker", "cooldwn", "did you mean `cooldown`?"),
        ("[chunking]\nchunk_sise = 100\n", "chunking", "chunk_sise", "did you mean `chunk_size`?"),
        ("[ingest]\nbatch_chunk = 8\n", "ingest", "batch_chunk", "did you mean `batch_chunks`?"),
        ("[query]\nzzz = 1\n", "query", "zzz", "valid keys: max_question_chars, max_source_chars, top_k"),
    ],
)
def test_unknown_key_in_a_section_names_file_section_key_and_closest(tmp_path, toml, section, key, hint):
    bad = tmp_path / "typo.toml"
    bad.write_text(toml)
    with pytest.raises(ConfigError) as excinfo:
        load_config(bad)
    message = str(excinfo.value)
    assert str(bad) in message
    assert f"{section}: unknown key `{key}` ({hint})" in message


def test_unknown_section_gets_the_closest_section(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[lmm]\nprovider = "openai"\n')
    with pytest.raises(ConfigError, match=r"unknown key `lmm` at the top level \(did you mean `llm`\?\)"):
        load_config(bad)


def test_unknown_key_in_overrides_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"store: unknown key `paht` \(did you mean `path`\?\)"):
        load_config(store={"paht": "x"})


def test_typo_in_a_nested_env_var_names_the_variable(tmp_path, monkeypatch):
    """pydantic-settings passes RAGLINE_<SECTION>__<KEY> through whatever KEY is, so the
    section refuses it; a variable naming no section at all is not ours and stays ignored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGLINE_NOT_A_SECTION__X", "1")
    assert load_config().budget.per_query_usd is None
    monkeypatch.setenv("RAGLINE_BUDGET__PER_QUERY_USD_MAX", "0.01")
    with pytest.raises(ConfigError) as excinfo:
        load_config()
    assert (
        "budget: unknown key `per_query_usd_max` from RAGLINE_BUDGET__PER_QUERY_USD_MAX "
        "(did you mean `per_query_usd`?)"
    ) in str(excinfo.value)


def test_typo_in_a_source_names_its_index_key_and_closest(tmp_path):
    config = tmp_path / "ragline.toml"
    good = '[[sources]]\nkind = "filesystem"\nroot = "notes"\ninclude = ["*.md"]\n\n'
    config.write_text(good + '[[sources]]\nkind = "dataset"\npath = "d.jsonl"\ntext_field = ["body"]\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(config)
    message = str(excinfo.value)
    assert str(config) in message
    assert "sources.1: unknown key `text_field` for a dataset source (did you mean `text_fields`?)" in message
    assert "sources.0" not in message

    # A plugin's kind is checked by the plugin when its connector is made, not here.
    config.write_text(good + '[[sources]]\nkind = "notion"\ndatabase = "x"\n')
    loaded = load_config(config)
    assert [s.connector_settings() for s in loaded.sources] == [
        {"root": "notes", "include": ["*.md"]}, {"database": "x"}
    ]


def test_connector_settings_models_refuse_unknown_keys(tmp_path):
    from pydantic import ValidationError

    from ragline.connectors.dataset import DatasetConfig
    from ragline.connectors.sql import SQLConfig

    with pytest.raises(ValidationError, match="text_field"):
        DatasetConfig(path=tmp_path, text_field=["body"])
    with pytest.raises(ValidationError, match="id_col"):
        SQLConfig(url="sqlite://", query="SELECT 1", id_col="id", id_column="id", text_columns=["a"])


def test_every_config_section_refuses_unknown_keys():
    """Walks the whole config tree, so a section added later without the shared base fails here."""
    from ragline.config import RaglineConfig, _model_in
    from ragline.ingest.config import SourceConfig

    seen, todo = set(), [RaglineConfig]
    while todo:
        model = todo.pop()
        seen.add(model)
        todo += [m for f in model.model_fields.values() if (m := _model_in(f.annotation)) and m not in seen]
    lenient = {m.__name__ for m in seen if m.model_config.get("extra") != "forbid"}
    assert lenient == {SourceConfig.__name__}  # extra="allow" on purpose: the connector's settings
    assert {"BudgetLimits", "BreakerSettings", "ReliabilityConfig", "ModelConfig"} <= {m.__name__ for m in seen}


def _readme_example(tmp_path, heading: str):
    """The first TOML block after `heading` in the README, loaded as a config file."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split(heading, 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "ragline.toml"
    config.write_text(example)
    return load_config(config)


def test_the_readme_configuration_example_loads(tmp_path):
    loaded = _readme_example(tmp_path, "## Configuration")
    assert loaded.retrieval.mmr_lambda == 0.4 and loaded.ingest.batch_chunks == 256


def test_the_readme_sources_schedule_example_is_valid(tmp_path):
    (source,) = _readme_example(tmp_path, "## Serving a store").sources
    assert source.schedule == "0 2 * * *" and source.timezone == "Europe/Berlin" and source.name == "handbook"


def test_a_typo_in_a_sources_schedule_key_names_the_key_it_meant(tmp_path):
    config = tmp_path / "ragline.toml"
    config.write_text('[[sources]]\nkind = "filesystem"\nroot = "/tmp"\nschedul = "0 2 * * *"\n')
    with pytest.raises(ConfigError, match="unknown key `schedul` for a filesystem source \\(did you mean `schedule`\\?\\)"):
        load_config(config)


def test_the_readme_access_example_is_valid(tmp_path):
    loaded = _readme_example(tmp_path, "## Access control")
    (source,) = loaded.sources
    assert loaded.access.enabled and loaded.access.groups_file == "groups.toml" and loaded.access.admins == []
    assert source.readers == ["group:hr"] and source.owners == []


def test_a_malformed_reader_in_the_config_names_the_entry(tmp_path):
    config = tmp_path / "ragline.toml"
    config.write_text('[[sources]]\nkind = "filesystem"\nroot = "."\nreaders = ["hr"]\n')
    with pytest.raises(ConfigError, match="'hr' is malformed"):
        load_config(config)


def test_each_store_gets_its_own_temporal_task_queue_unless_one_is_named(tmp_path):
    from ragline.temporal.config import task_queue

    first = load_config(store={"path": str(tmp_path / "a")})
    second = load_config(store={"path": str(tmp_path / "b")})
    assert task_queue(first) != task_queue(second)  # two stores never take each other's runs
    assert task_queue(first) == task_queue(load_config(store={"path": str(tmp_path / "a" / ".." / "a")}))
    server = {"kind": "server", "url": "http://127.0.0.1:6333", "collection": "docs"}
    assert task_queue(load_config(store={**server, "path": str(tmp_path / "a")})) == task_queue(
        load_config(store={**server, "path": str(tmp_path / "b")})
    )  # a server store is the same index from any directory or machine
    assert task_queue(load_config(temporal={"task_queue": "ingest-hr"})) == "ingest-hr"
