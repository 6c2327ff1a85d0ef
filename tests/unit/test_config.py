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
