"""Huawei Cloud credentials from the places the official SDKs read them, and nowhere else.

Order: the huaweicloudsdkcore environment (`HUAWEICLOUD_SDK_AK` / `_SK` / `_PROJECT_ID` /
`_SECURITY_TOKEN`), then the OBS SDK environment (`OBS_ACCESS_KEY_ID` / `OBS_SECRET_ACCESS_KEY` /
`OBS_SECURITY_TOKEN`), then the SDK credentials file (`HUAWEICLOUD_SDK_CREDENTIALS_FILE`, default
`~/.huaweicloud/credentials`, section `[basic]` with `ak`, `sk`, `project_id`, `security_token`).
There is deliberately no metadata-service (ECS 169.254.169.254) fallback: a machine without
credentials gets `CredentialsMissing`, never a silent network call. The secret key and the security
token never appear in `repr`, `str` or any message; the access key only as its first four characters.

`unusable_reason` is the one check, run before anything reads a backend's state, of whether the huawei
backend can work here at all: its SDKs installed (looked up, not imported, so the console's first frame
stays light) and credentials found.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

AK_ENV = "HUAWEICLOUD_SDK_AK"
SK_ENV = "HUAWEICLOUD_SDK_SK"
PROJECT_ID_ENV = "HUAWEICLOUD_SDK_PROJECT_ID"
SECURITY_TOKEN_ENV = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 (a variable name)
OBS_AK_ENV = "OBS_ACCESS_KEY_ID"
OBS_SK_ENV = "OBS_SECRET_ACCESS_KEY"
OBS_TOKEN_ENV = "OBS_SECURITY_TOKEN"  # noqa: S105 (a variable name)
CREDENTIALS_FILE_ENV = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
PROFILE_SECTION = "basic"
SDK_MODULES = ("huaweicloudsdkcore", "huaweicloudsdkmodelarts", "huaweicloudsdkces", "huaweicloudsdkapig", "obs")
"""The top-level modules of the `huawei` extra (pyproject.toml); the adapters import all of them."""
INSTALL_HINT = "pip install -e '.[huawei]'"


class CredentialsMissing(Exception):
    """No usable credentials were found; the message says exactly what to set."""


def default_credentials_file() -> Path:
    return Path.home() / ".huaweicloud" / "credentials"


@dataclass(frozen=True)
class Credentials:
    """An access key pair (plus optional project id and temporary security token)."""

    access_key: str
    secret_key: str = field(repr=False)
    project_id: str = ""
    security_token: str = field(default="", repr=False)
    source: str = ""
    """Where they came from, for messages (`environment HUAWEICLOUD_SDK_AK`, a file path)."""

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise CredentialsMissing("an access key and a secret key are both required")

    @property
    def masked_access_key(self) -> str:
        """Enough of the access key to tell keys apart in a message; the rest hidden."""
        return self.access_key[:4] + "…" if len(self.access_key) > 4 else "…"

    def secrets(self) -> tuple[str, ...]:
        """The values that must never reach a log or a message (for redaction). The access key is one:
        a server that repeats the request's Authorization header in its error text would otherwise put
        the whole key id on the screen, where `masked_access_key` is the most a message shows."""
        return tuple(value for value in (self.secret_key, self.security_token, self.access_key) if value)

    def __repr__(self) -> str:
        token = ", with security token" if self.security_token else ""
        project = f", project_id={self.project_id!r}" if self.project_id else ""
        return f"Credentials(access_key={self.masked_access_key!r}{project}{token}, source={self.source!r})"

    __str__ = __repr__


def _missing_message(detail: str, credentials_file: Path) -> str:
    return (
        f"{detail}. Set {AK_ENV} and {SK_ENV} (and {PROJECT_ID_ENV}; {SECURITY_TOKEN_ENV} for temporary "
        f"credentials) in the environment, or {OBS_AK_ENV} and {OBS_SK_ENV}, or write them as ak / sk / "
        f"project_id in the [{PROFILE_SECTION}] section of the SDK credentials file {credentials_file} "
        f"(its path can be changed with {CREDENTIALS_FILE_ENV})"
    )


def _from_pair(
    environ: Mapping[str, str], ak_name: str, sk_name: str, token_name: str, credentials_file: Path
) -> Credentials | None:
    ak, sk = environ.get(ak_name, "").strip(), environ.get(sk_name, "").strip()
    if not ak and not sk:
        return None
    if not ak or not sk:
        present, absent = (ak_name, sk_name) if ak else (sk_name, ak_name)
        raise CredentialsMissing(_missing_message(f"{present} is set but {absent} is not", credentials_file))
    return Credentials(
        access_key=ak,
        secret_key=sk,
        project_id=environ.get(PROJECT_ID_ENV, "").strip(),
        security_token=environ.get(token_name, "").strip(),
        source=f"environment {ak_name}",
    )


def _read_profile(path: Path) -> dict[str, str]:
    """The key/value pairs of the `[basic]` section; a file without sections is read as one section."""
    text = path.read_text(encoding="utf-8")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError:
        parser.read_string(f"[{PROFILE_SECTION}]\n{text}", source=str(path))
    except configparser.Error as error:
        raise CredentialsMissing(
            f"{path}: the credentials file cannot be parsed ({type(error).__name__} "
            f"at line {getattr(error, 'lineno', '?')})"
        ) from None
    if not parser.has_section(PROFILE_SECTION):
        raise CredentialsMissing(_missing_message(f"{path} has no [{PROFILE_SECTION}] section", path))
    return {key.lower(): value.strip() for key, value in parser.items(PROFILE_SECTION)}


def _from_file(path: Path) -> Credentials:
    try:
        profile = _read_profile(path)
    except FileNotFoundError:
        raise CredentialsMissing(_missing_message("no Huawei Cloud credentials found", path)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialsMissing(f"{path}: the credentials file cannot be read ({type(error).__name__})") from None
    ak, sk = profile.get("ak", ""), profile.get("sk", "")
    if not ak or not sk:
        absent = " and ".join(name for name, value in (("ak", ak), ("sk", sk)) if not value)
        raise CredentialsMissing(_missing_message(f"{path}: [{PROFILE_SECTION}] has no {absent}", path))
    return Credentials(
        access_key=ak,
        secret_key=sk,
        project_id=profile.get("project_id", ""),
        security_token=profile.get("security_token", ""),
        source=str(path),
    )


def load_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """The first complete set of credentials in the documented order; `CredentialsMissing` if none."""
    environ = os.environ if environ is None else environ
    configured_file = environ.get(CREDENTIALS_FILE_ENV, "").strip()
    credentials_file = Path(configured_file).expanduser() if configured_file else default_credentials_file()
    for ak_name, sk_name, token_name in ((AK_ENV, SK_ENV, SECURITY_TOKEN_ENV), (OBS_AK_ENV, OBS_SK_ENV, OBS_TOKEN_ENV)):
        found = _from_pair(environ, ak_name, sk_name, token_name, credentials_file)
        if found is not None:
            return found
    return _from_file(credentials_file)


def missing_sdk_modules() -> list[str]:
    """The SDK modules that cannot be imported here, found without importing any of them."""
    missing = []
    for name in SDK_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses the name; a module without a spec
            found = False
        if not found:
            missing.append(name)
    return missing


def unusable_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the huawei backend cannot work on this machine (one message that says what to do), or None."""
    missing = missing_sdk_modules()
    if missing:
        which = "" if len(missing) == len(SDK_MODULES) else f" (missing: {', '.join(missing)})"
        return (
            f"the huawei backend needs the Huawei Cloud SDKs, which are not installed here{which}; install "
            f"them with `{INSTALL_HINT}`, or use --backend local"
        )
    try:
        load_credentials(environ)
    except CredentialsMissing as error:
        return f"the huawei backend cannot sign in: {error}"
    return None


__all__ = [
    "Credentials",
    "CredentialsMissing",
    "default_credentials_file",
    "load_credentials",
    "missing_sdk_modules",
    "unusable_reason",
]
