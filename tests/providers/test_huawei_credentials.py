"""Credentials come only from the SDK environment or the SDK credentials file, and never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from arsl_tui.providers.huawei.credentials import (
    INSTALL_HINT,
    SDK_MODULES,
    Credentials,
    CredentialsMissing,
    load_credentials,
    missing_sdk_modules,
    unusable_reason,
)

SECRET = "sk-very-secret-value-0123456789"


def no_file(tmp_path: Path) -> dict[str, str]:
    """An environment whose credentials file does not exist (so nothing leaks in from ~)."""
    return {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(tmp_path / "absent")}


def test_the_sdk_environment_comes_first(tmp_path: Path) -> None:
    environ = {
        **no_file(tmp_path),
        "HUAWEICLOUD_SDK_AK": "AKCORE",
        "HUAWEICLOUD_SDK_SK": SECRET,
        "HUAWEICLOUD_SDK_PROJECT_ID": "proj-1",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": "token-xyz",
        "OBS_ACCESS_KEY_ID": "AKOBS",
        "OBS_SECRET_ACCESS_KEY": "other",
    }
    credentials = load_credentials(environ)
    assert (credentials.access_key, credentials.secret_key, credentials.project_id, credentials.security_token) == (
        "AKCORE",
        SECRET,
        "proj-1",
        "token-xyz",
    )
    assert credentials.source == "environment HUAWEICLOUD_SDK_AK"


def test_the_obs_sdk_environment_is_read_next(tmp_path: Path) -> None:
    environ = {
        **no_file(tmp_path),
        "OBS_ACCESS_KEY_ID": "AKOBS",
        "OBS_SECRET_ACCESS_KEY": SECRET,
        "OBS_SECURITY_TOKEN": "obs-token",
        "HUAWEICLOUD_SDK_PROJECT_ID": "proj-2",
    }
    credentials = load_credentials(environ)
    assert (credentials.access_key, credentials.security_token, credentials.project_id) == (
        "AKOBS",
        "obs-token",
        "proj-2",
    )


def test_the_credentials_file_is_read_last(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(f"[basic]\nak = AKFILE\nsk = {SECRET}\nproject_id = proj-3\n", encoding="utf-8")
    credentials = load_credentials({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})
    assert (credentials.access_key, credentials.secret_key, credentials.project_id) == ("AKFILE", SECRET, "proj-3")
    assert credentials.source == str(path)
    path.write_text(f"ak=AKBARE\nsk={SECRET}\n", encoding="utf-8")  # no section header: read as [basic]
    assert load_credentials({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)}).access_key == "AKBARE"


def test_the_default_file_is_under_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".huaweicloud").mkdir()
    (tmp_path / ".huaweicloud" / "credentials").write_text(f"[basic]\nak=AKHOME\nsk={SECRET}\n", encoding="utf-8")
    assert load_credentials({}).access_key == "AKHOME"


def test_nothing_found_names_every_way_to_provide_them(tmp_path: Path) -> None:
    with pytest.raises(CredentialsMissing) as caught:
        load_credentials(no_file(tmp_path))
    message = str(caught.value)
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "OBS_ACCESS_KEY_ID",
        "OBS_SECRET_ACCESS_KEY",
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
        str(tmp_path / "absent"),
    ):
        assert name in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HUAWEICLOUD_SDK_AK": "AK"}, "HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK is not"),
        ({"OBS_SECRET_ACCESS_KEY": SECRET}, "OBS_SECRET_ACCESS_KEY is set but OBS_ACCESS_KEY_ID is not"),
    ],
)
def test_half_a_key_pair_is_an_error_not_a_fallback(environ: dict[str, str], expected: str, tmp_path: Path) -> None:
    with pytest.raises(CredentialsMissing, match=expected) as caught:
        load_credentials({**no_file(tmp_path), **environ})
    assert SECRET not in str(caught.value)


def test_a_file_without_a_secret_key_says_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("[basic]\nak = AKFILE\n", encoding="utf-8")
    with pytest.raises(CredentialsMissing, match=r"\[basic\] has no sk"):
        load_credentials({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})
    path.write_text(f"[global]\nak = AKFILE\nsk = {SECRET}\n", encoding="utf-8")
    with pytest.raises(CredentialsMissing, match=r"has no \[basic\] section") as caught:
        load_credentials({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})
    assert SECRET not in str(caught.value)


def test_the_secret_never_shows_in_repr_or_str() -> None:
    credentials = Credentials(
        access_key="AKIDEXAMPLE", secret_key=SECRET, project_id="p", security_token="temporary-token-value"
    )
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert SECRET not in text and "temporary-token-value" not in text and "AKIDEXAMPLE" not in text
        assert "AKID…" in text
    assert credentials.secrets() == (SECRET, "temporary-token-value", "AKIDEXAMPLE")
    with pytest.raises(CredentialsMissing):
        Credentials(access_key="AK", secret_key="")


def test_the_backend_is_usable_with_its_sdks_and_credentials(tmp_path: Path) -> None:
    environ = {**no_file(tmp_path), "HUAWEICLOUD_SDK_AK": "AKCORE", "HUAWEICLOUD_SDK_SK": SECRET}
    assert unusable_reason(environ) is None


def test_without_credentials_the_reason_says_where_to_put_them(tmp_path: Path) -> None:
    reason = unusable_reason(no_file(tmp_path))
    assert reason is not None
    assert "no Huawei Cloud credentials found" in reason and "HUAWEICLOUD_SDK_AK" in reason
    assert reason.count("credentials found") == 1


def test_missing_sdks_come_before_credentials_and_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without(*hidden: str) -> None:
        def find_spec(name: str, package: str | None = None) -> object:
            if name in hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return real_find_spec(name, package)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    without("huaweicloudsdkces")
    assert missing_sdk_modules() == ["huaweicloudsdkces"]
    partial = unusable_reason(no_file(tmp_path))
    assert partial is not None and "(missing: huaweicloudsdkces)" in partial and INSTALL_HINT in partial
    without(*SDK_MODULES)
    reason = unusable_reason(no_file(tmp_path))
    assert reason is not None and "missing:" not in reason and "credentials" not in reason
    assert f"install them with `{INSTALL_HINT}`" in reason
