"""Config loading: precedence, typed checks, clear errors, and no credentials in files."""

from __future__ import annotations

from pathlib import Path

import pytest

from arsl_tui.config import ConfigError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.source == "defaults"
    assert settings.huawei.region == "af-north-1"
    assert settings.upload.mode == "shards"
    assert settings.canary.steps == (10, 25, 50, 100)
    assert settings.huawei.endpoint("obs") == "https://obs.af-north-1.myhuaweicloud.com"


def test_repository_config_matches_the_built_in_defaults() -> None:
    shipped = load_settings(Path(__file__).parents[2] / "config.toml", environ={})
    defaults = load_settings(environ={}, cwd=Path("/nonexistent"))
    assert {**shipped.__dict__, "source": ""} == {**defaults.__dict__, "source": ""}


def test_precedence_cli_over_env_over_file_over_cwd(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", '[upload]\nconcurrency = 3\nmode = "files"\n')
    explicit = write(tmp_path / "other.toml", "[upload]\nconcurrency = 5\n")

    assert load_settings(environ={}, cwd=tmp_path).upload.concurrency == 3
    from_explicit = load_settings(explicit, environ={}, cwd=tmp_path)
    assert from_explicit.upload.concurrency == 5
    assert from_explicit.upload.mode == "shards", "an explicit --config replaces ./config.toml, it is not merged"
    assert load_settings(environ={"ARSL_CONFIG": str(explicit)}, cwd=tmp_path).upload.concurrency == 5
    env = {"ARSL_CONFIG": str(explicit), "ARSL_UPLOAD_CONCURRENCY": "7"}
    assert load_settings(environ=env, cwd=tmp_path).upload.concurrency == 7
    assert load_settings(environ=env, cwd=tmp_path, cli_overrides={"upload.concurrency": 9}).upload.concurrency == 9


def test_env_parses_booleans_lists_and_top_level_keys(tmp_path: Path) -> None:
    env = {
        "ARSL_READ_ONLY": "yes",
        "ARSL_CANARY_STEPS": "5, 50,100",
        "ARSL_BACKEND": "huawei",
        "ARSL_STORAGE_DATASETS_PREFIX": "ds/",
        "ARSL_HOME": "/ignored-here",
        "ARSL_UNRELATED": "x",
    }
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.read_only is True
    assert settings.canary.steps == (5, 50, 100)
    assert settings.backend == "huawei"
    assert settings.storage.datasets_prefix == "ds/"


@pytest.mark.parametrize(
    ("text", "expected_fragments"),
    [
        ('[upload]\nconcurrency = "many"\n', ["upload.concurrency", "'many'", "an integer"]),
        ("[upload]\nconcurrency = 0\n", ["upload.concurrency", "0", "between 1 and 256"]),
        ('[upload]\nmode = "tar"\n', ["upload.mode", "'tar'", "'shards'", "'files'"]),
        ('backend = "aws"\n', ["backend", "'aws'", "'local'"]),
        ("[upload]\nconcurrenzy = 4\n", ["unknown key", "upload.concurrenzy", "concurrency"]),
        ("[gate]\nmin_accuracy = 1.5\n", ["gate.min_accuracy", "1.5"]),
        ("read_only = 1\n", ["read_only", "true or false"]),
        ("[canary]\nsteps = []\n", ["canary.steps", "a list of integers"]),
        ("upload = 3\n", ["[upload] must be a table"]),
        ("[upload\n", ["not valid TOML"]),
        ('[keymap]\n"upload.start" = 5\n', ["keymap"]),
    ],
)
def test_bad_values_name_file_key_value_and_expectation(
    tmp_path: Path, text: str, expected_fragments: list[str]
) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert str(path) in message
    for fragment in expected_fragments:
        assert fragment in message


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ARSL_UPLOAD_MAX_ATTEMPTS: upload.max_attempts = 'lots'"):
        load_settings(environ={"ARSL_UPLOAD_MAX_ATTEMPTS": "lots"}, cwd=tmp_path)


@pytest.mark.parametrize("key", ["ak", "sk", "secret_access_key", "app_secret", "obs_sk"])
def test_credentials_in_a_config_file_are_refused_without_echoing_them(tmp_path: Path, key: str) -> None:
    secret = "CANARY-SECRET-9f8e7d6c5b4a"
    path = write(tmp_path / "c.toml", f'[huawei]\n{key} = "{secret}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "HUAWEICLOUD_SDK_AK" in str(caught.value)
    assert secret not in str(caught.value)


def test_missing_explicit_file_and_folder_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="is a folder"):
        load_settings(tmp_path, environ={})


def test_keymap_merges_and_home_resolves(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", f'home = "{tmp_path}/state"\n[keymap]\n"upload.start" = "ctrl+u"\n')
    settings = load_settings(path, environ={})
    assert settings.keymap == {"upload.start": "ctrl+u"}
    assert settings.home_dir == tmp_path / "state"
