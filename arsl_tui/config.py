"""config.toml → typed settings.

Precedence, highest first: CLI flags > `ARSL_*` environment > `--config` / `$ARSL_CONFIG` >
`./config.toml` > built-in defaults. Every bad value fails with `ConfigError`, whose message names
the file (or variable), the key, the value and what was expected. Credentials are never read
from a config file: the Huawei SDKs take them from their own environment variables or
credentials file (see `providers/huawei/credentials.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import stat
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CONFIG_ENV = "ARSL_CONFIG"
HOME_ENV = "ARSL_HOME"
ENV_PREFIX = "ARSL_"

# Key names that would hold a secret; a config file that sets one is refused outright.
_CREDENTIAL_KEYS = frozenset(
    {
        "ak",
        "sk",
        "access_key",
        "secret_key",
        "access_key_id",
        "secret_access_key",
        "security_token",
        "password",
        "app_secret",
        "app_code",
        "api_key",
        "token",
    }
)


class ConfigError(Exception):
    """A config value is wrong; the message says where, which key, what value and what was expected."""


MAX_CONFIG_BYTES = 1024 * 1024
"""A config file is a few KB; a bigger one (or /dev/zero) is refused before it is read into memory."""
_SHOWN_CHARS = 80
"""Values longer than this are cut in messages, so a huge value cannot flood the terminal."""
_INT_CEILING = 10**9
_FLOAT_CEILING = 1e9
"""Bounds for settings documented only as "at least N": a bigger value is a typo, and would overflow
SQLite integers or timers further on."""


def _bounded(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"low": low, "high": high}


def _text(*, required: bool = False, pattern: str | None = None, expect: str = "") -> dict[str, Any]:
    """String rules: `required` refuses the empty string; `pattern` (full match) describes a valid value."""
    return {"required": required, "pattern": re.compile(pattern) if pattern else None, "expect": expect}


_REQUIRED = _text(required=True)
_PREFIX = _text(
    pattern=r"(?:(?!\.\.?/)[A-Za-z0-9_.-]+/)*",
    expect="empty, or '/'-separated names each ending in '/' "
    "(letters, digits, '_', '.', '-'; no '.' or '..' segments), e.g. 'datasets/'",
)
_BUCKET = _text(
    required=True,
    pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
    expect="a bucket name: 3–63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit",
)


@dataclass(frozen=True)
class HuaweiSettings:
    region: str = field(default="af-north-1", metadata=_REQUIRED)
    obs_endpoint: str = ""
    """Empty means the region's public endpoint (https://obs.<region>.myhuaweicloud.com)."""
    modelarts_endpoint: str = ""
    ces_endpoint: str = ""
    apig_endpoint: str = ""
    iam_endpoint: str = ""
    smn_endpoint: str = ""
    apig_instance_id: str = ""
    service_name: str = field(default="arsl-sign-classifier", metadata=_REQUIRED)
    """The ModelArts real-time service the canary controller deploys into."""
    service_flavor: str = field(default="modelarts.vm.cpu.2u", metadata=_REQUIRED)
    service_image: str = ""
    """SWR path of the serving image (the model package's serving entry); empty until configured."""
    service_instances: int = field(default=1, metadata=_bounded(1, 128))
    service_port: int = field(default=8080, metadata=_bounded(1, 65_535))
    serving: Literal["realtime", "deployments"] = "realtime"
    """How ModelArts serves the versions: "realtime" (real-time services on public or dedicated pools, each
    version a weighted `config[]` entry of an imported AI application) or "deployments" (new-version services
    on the dedicated pool `pool_id`, a deployment per version)."""
    service_specification: str = field(default="modelarts.vm.cpu.2u", metadata=_REQUIRED)
    """Realtime serving: the specification each version's instances run on (checked against ModelArts' list)."""
    service_auth: Literal["app", "token"] = "app"
    """Realtime serving: how clients call the service: "app" (application authentication; clients send
    `X-Apig-AppCode`) or "token" (an IAM token or AK/SK signature)."""
    service_app_id: str = ""
    """Realtime serving with `service_auth = "app"`: the id of the ModelArts app authorised to call the service."""
    pool_id: str = ""
    """The dedicated resource pool to serve on: required for "deployments" serving (new-version services run on
    no other); optional for "realtime" (empty: the public pool)."""
    service_priority: int = field(default=1, metadata=_bounded(1, 3))
    """Priority of a new-version service's deployments (1-3); updates resend the value a deployment holds."""
    aom_endpoint: str = ""
    aom_requests_metric: str = field(default="infer_requests_total", metadata=_REQUIRED)
    """AOM (Prometheus) counter of calls per deployment of a new-version service (see AOM's metric browser)."""
    aom_failures_metric: str = field(default="infer_requests_failed_total", metadata=_REQUIRED)
    """AOM (Prometheus) counter of failed calls per deployment of a new-version service."""
    apig_group_name: str = field(default="arsl", metadata=_REQUIRED)
    apig_api_name: str = field(default="arsl_predict", metadata=_REQUIRED)
    apig_app_name: str = field(default="arsl_clients", metadata=_REQUIRED)
    apig_environment: str = field(default="RELEASE", metadata=_REQUIRED)
    apig_domain: str = field(
        default="",
        metadata=_text(
            pattern=r"(?=.{1,255}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}",
            expect="a domain name such as 'api.example.com' (letters, digits, '-' and dots; at most 255 characters)",
        ),
    )
    """The independent domain bound to the API group, reported as the API's address. Empty: only the group's
    debugging domain, which API Gateway allows 1,000 calls a day (apig_03_0006)."""
    timeout_s: float = field(default=30.0, metadata=_bounded(0.1, 600))

    def endpoint(self, service: str) -> str:
        configured: str = getattr(self, f"{service}_endpoint")
        return configured or f"https://{service}.{self.region}.myhuaweicloud.com"


@dataclass(frozen=True)
class StorageSettings:
    bucket: str = field(default="arsl-ml", metadata=_BUCKET)
    datasets_prefix: str = field(default="datasets/", metadata=_PREFIX)
    code_prefix: str = field(default="code/", metadata=_PREFIX)
    output_prefix: str = field(default="output/", metadata=_PREFIX)
    models_prefix: str = field(default="models/", metadata=_PREFIX)


@dataclass(frozen=True)
class DatasetSettings:
    split_seed: int = field(default=1337, metadata=_bounded(0, 2**32 - 1))
    val_fraction: float = field(default=0.1, metadata=_bounded(0.0, 0.5))
    test_fraction: float = field(default=0.1, metadata=_bounded(0.0, 0.5))


@dataclass(frozen=True)
class UploadSettings:
    mode: Literal["shards", "files"] = "shards"
    concurrency: int = field(default=32, metadata=_bounded(1, 256))
    shard_size_mb: int = field(default=64, metadata=_bounded(1, 4096))
    multipart_threshold_mb: int = field(default=32, metadata=_bounded(5, 4096))
    part_size_mb: int = field(default=16, metadata=_bounded(5, 1024))
    max_attempts: int = field(default=8, metadata=_bounded(1, 100))
    backoff_base_s: float = field(default=0.2, metadata=_bounded(0.0, 60))
    backoff_max_s: float = field(default=10.0, metadata=_bounded(0.0, 600))
    sender_processes: int = field(default=0, metadata=_bounded(0, 16))
    """Files mode: processes that send the requests (0: automatic, see `ops.upload_senders`; 1: none)."""


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = field(default=7, metadata=_bounded(1, 10_000))
    batch_size: int = field(default=64, metadata=_bounded(1, 65_536))
    learning_rate: float = field(default=0.003, metadata=_bounded(0.0, 10))
    model: str = field(default="small", metadata=_REQUIRED)
    """`small` reaches the production gate on the demo set in 7 epochs of batch 64 on two CPU cores (bench/train.py)."""
    nodes: int = field(default=1, metadata=_bounded(1, 512))
    gpus: int = field(default=1, metadata=_bounded(0, 16))
    local_processes: int = field(default=2, metadata=_bounded(1, 64))
    engine_name: str = field(default="PyTorch", metadata=_REQUIRED)
    engine_version: str = field(default="pytorch_2.1.0-cuda_12.1-py_3.10.6-ubuntu_22.04-x86_64", metadata=_REQUIRED)
    """A preset of `engine_name` ("Preparing a Model Training Image", develop-modelarts-1417); checked against
    ModelArts' own list (`GET /v2/{project_id}/training-job-engines`) before a job is submitted."""
    flavor_id: str = field(default="modelarts.p3.large.public.free", metadata=_REQUIRED)


@dataclass(frozen=True)
class GateSettings:
    min_accuracy: float = field(default=0.95, metadata=_bounded(0.0, 1.0))
    max_loss: float = field(default=0.1, metadata=_bounded(0.0, None))
    stability_epochs: int = field(default=3, metadata=_bounded(1, 1000))
    max_val_acc_spread: float = field(default=0.02, metadata=_bounded(0.0, 1.0))
    max_train_val_gap: float = field(default=0.05, metadata=_bounded(0.0, 1.0))
    max_val_loss_rise: float = field(default=0.02, metadata=_bounded(0.0, None))
    min_class_accuracy: float = field(default=0.8, metadata=_bounded(0.0, 1.0))
    max_regression: float = field(default=0.005, metadata=_bounded(0.0, 1.0))
    max_class_regression: float = field(default=0.05, metadata=_bounded(0.0, 1.0))


@dataclass(frozen=True)
class CanarySettings:
    steps: tuple[int, ...] = field(default=(10, 25, 50, 100), metadata={**_bounded(1, 100), "rising_to": 100})
    """Rising whole percentages; the last sends all traffic (100) to the challenger."""
    window_s: int = field(default=300, metadata=_bounded(1, 86_400))
    min_samples: int = field(default=100, metadata=_bounded(1, None))
    max_error_rate: float = field(default=0.02, metadata=_bounded(0.0, 1.0))
    max_p95_latency_ms: float = field(default=250.0, metadata=_bounded(0.0, None))
    min_online_accuracy: float = field(default=0.9, metadata=_bounded(0.0, 1.0))
    min_feedback: int = field(default=20, metadata=_bounded(1, None))
    """Feedback labels a version needs in a window before its online accuracy counts."""
    require_feedback: bool = False
    """A window whose challenger has fewer than `min_feedback` labels holds (inconclusive) instead of being judged
    on the other metrics: online accuracy is critical, and without labels nothing measured it (Kayenta's
    `mustHaveData`). Off by default, as clients that send no feedback would hold every step."""
    confidence: float = field(default=0.98, metadata=_bounded(0.5, 0.9999))
    """Of the Mann-Whitney comparison with the stable version (two-sided)."""
    max_error_increase: float = field(default=1.0, metadata=_bounded(0.0, None))
    max_latency_increase: float = field(default=0.5, metadata=_bounded(0.0, None))
    min_latency_increase_ms: float = field(default=5.0, metadata=_bounded(0.0, None))
    max_accuracy_drop: float = field(default=0.02, metadata=_bounded(0.0, 1.0))
    pass_score: float = field(default=95.0, metadata=_bounded(0.0, 100.0))
    marginal_score: float = field(default=75.0, metadata=_bounded(0.0, 100.0))
    deploy_timeout_s: int = field(default=1200, metadata=_bounded(1, 86_400))
    poll_s: float = field(default=2.0, metadata=_bounded(0.05, 600))
    """How often `arsl canary watch` and the console check a deployment's progress."""
    shadow: bool = True
    """Step 0 of the plan: the challenger answers copies of live requests (never a client) before any split."""
    shadow_share: int = field(default=100, metadata=_bounded(1, 100))
    """Percent of answered requests copied to the challenger during the shadow window (local gateway)."""
    shadow_window_s: int = field(default=300, metadata=_bounded(1, 86_400))
    shadow_min_samples: int = field(default=100, metadata=_bounded(1, None))
    """Compared copies the shadow window needs before it is judged (fewer: it is held)."""
    min_agreement: float = field(default=0.8, metadata=_bounded(0.0, 1.0))
    """The share of copies on which the challenger must give the champion's label. Not 1: a better challenger
    disagrees exactly where the champion is wrong (online accuracy on the same requests tells which is right)."""
    shadow_queue: int = field(default=256, metadata=_bounded(1, 100_000))
    """Copies waiting for the challenger; beyond it a copy is dropped (and counted), never waited for."""


@dataclass(frozen=True)
class GatewaySettings:
    host: str = field(default="127.0.0.1", metadata=_REQUIRED)
    port: int = field(default=8765, metadata=_bounded(0, 65_535))
    max_body_kb: int = field(default=16_384, metadata=_bounded(1, 1_048_576))
    body_min_kb_per_s: float = field(default=16.0, metadata=_bounded(0.001, 1_048_576))
    """A request body must keep up with this rate (KB/s), less `body_grace_s`, or it gets 408."""
    body_grace_s: float = field(default=10.0, metadata=_bounded(0.0, 3600))
    """How far behind `body_min_kb_per_s` a body may fall: t seconds after it began, at least
    (t − body_grace_s) × body_min_kb_per_s KB must have arrived."""
    body_timeout_s: float = field(default=600.0, metadata=_bounded(0.1, 86_400))
    """The most time any request body may take, however fast it arrives."""
    api_call_limit: int = field(default=6000, metadata=_bounded(1, None))
    app_call_limit: int = field(default=600, metadata=_bounded(1, None))
    time_unit: Literal["SECOND", "MINUTE", "HOUR", "DAY"] = "MINUTE"
    ip_call_limit: int = field(default=0, metadata=_bounded(0, None))
    """Calls per time unit from one client address; 0 means no per-address limit."""
    max_batch: int = field(default=32, metadata=_bounded(1, 1024))
    max_wait_ms: float = field(default=3.0, metadata=_bounded(0.0, 1000))
    max_queue: int = field(default=1024, metadata=_bounded(1, 1_000_000))
    """Images waiting for inference beyond which requests are refused with 503 (load shedding)."""
    torch_threads: int = field(default=0, metadata=_bounded(0, 256))
    """Intra-op threads of the inference worker; 0 picks half the cores (at least 1)."""


@dataclass(frozen=True)
class AlarmSettings:
    smn_topic_urn: str = ""
    """SMN topic URN the Cloud Eye rules notify on alarm and on recovery; empty: no notifications."""
    evaluation_period_s: int = field(default=60, metadata=_bounded(1, 86_400))
    """The rules' period: each is judged once per period (Cloud Eye rounds it to 1 = raw, 300, 1200, …)."""
    retention_days: int = field(default=7, metadata=_bounded(1, 3650))
    count: int = field(default=3, metadata=_bounded(1, 180))
    suppress_s: int = field(default=300, metadata=_bounded(0, 86_400))
    max_error_rate: float = field(default=0.05, metadata=_bounded(0.0, 1.0))
    max_p95_latency_ms: float = field(default=500.0, metadata=_bounded(0.0, None))
    min_requests: int = field(default=0, metadata=_bounded(0, None))
    max_requests: int = field(default=6000, metadata=_bounded(0, None))
    min_online_accuracy: float = field(default=0.9, metadata=_bounded(0.0, 1.0))
    min_feedback: int = field(default=10, metadata=_bounded(1, None))
    """Feedback labels a period needs before its online accuracy counts."""
    custom_namespace: str = field(default="ARSL.Serving", metadata=_REQUIRED)
    service_id: str = ""
    api_id: str = ""


@dataclass(frozen=True)
class DriftSettings:
    threshold: float = field(default=0.25, metadata=_bounded(0.01, 10.0))
    """Drift score (the largest PSI of an image feature against the package's reference) above which a window
    drifts; 0.25 is the usual "the population has shifted" reading of PSI."""
    periods: int = field(default=3, metadata=_bounded(1, 180))
    """Consecutive drifting periods ([alarms] evaluation_period_s) before `arsl-input-drift` alarms."""
    window_s: int = field(default=300, metadata=_bounded(1, 86_400))
    """How much recent traffic each drift measurement covers."""
    low_confidence: float = field(default=0.5, metadata=_bounded(0.0, 1.0))
    """A top-1 confidence under this counts as a low-confidence answer."""
    min_images: int = field(default=200, metadata=_bounded(1, None))
    """Live images a window needs before its drift score counts: with ten bins, PSI over a few dozen images of
    an unchanged population already reaches 0.2–0.3 by chance."""


@dataclass(frozen=True)
class ConsoleSettings:
    theme: str = field(default="arsl-dark", metadata=_REQUIRED)
    show_header: bool = True
    refresh_s: float = field(default=1.0, metadata=_bounded(0.1, 60))


@dataclass(frozen=True)
class Settings:
    backend: Literal["local", "huawei"] = "local"
    read_only: bool = False
    home: str = ""
    """State directory for the local backend; empty means `$ARSL_HOME` or the user data dir."""
    huawei: HuaweiSettings = HuaweiSettings()
    storage: StorageSettings = StorageSettings()
    dataset: DatasetSettings = DatasetSettings()
    upload: UploadSettings = UploadSettings()
    train: TrainSettings = TrainSettings()
    gate: GateSettings = GateSettings()
    canary: CanarySettings = CanarySettings()
    gateway: GatewaySettings = GatewaySettings()
    alarms: AlarmSettings = AlarmSettings()
    drift: DriftSettings = DriftSettings()
    console: ConsoleSettings = ConsoleSettings()
    keymap: Mapping[str, str] = field(default_factory=dict)
    """Binding id → keys (Textual syntax, comma-separated), e.g. {"upload.start" = "ctrl+u"}."""
    source: str = "defaults"
    """Which file the settings came from, for messages."""

    @property
    def home_dir(self) -> Path:
        if self.home:
            return Path(self.home).expanduser()
        return default_home()


def default_home() -> Path:
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "arsl"


_SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if dataclasses.is_dataclass(f.default)
}


def _show(value: Any) -> str:
    """`repr(value)` cut to a readable length: messages name the value without echoing a huge one."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}… ({len(text)} characters)"


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(expected))
    if origin is tuple:
        return "a list of integers"
    if expected is bool:
        return "true or false"
    if expected is int:
        return "an integer"
    if expected is float:
        return "a finite number"
    if expected is str:
        return "a string"
    return str(expected)


def _clean_text(value: str) -> str:
    """A string setting with no control character and no undecodable byte (a name, never terminal codes)."""
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError
    return value


def _coerce(value: Any, expected: Any, *, from_text: bool) -> Any:
    """Check `value` against the annotation; text from the environment is parsed first."""
    origin = typing.get_origin(expected)
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(expected):
            return value
        raise ValueError
    if origin is tuple:
        if from_text:
            value = [part.strip() for part in str(value).split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError
        return tuple(_coerce(item, int, from_text=from_text) for item in value)
    if expected is bool:
        if from_text:
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(value, bool):
            return value
        raise ValueError
    if expected is int:
        if from_text:
            text = str(value).strip()
            if not text.isascii():  # int() takes other scripts' digits; a setting is plain ASCII
                raise ValueError
            return int(text)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError
    if expected is float:
        if from_text:
            text = str(value).strip()
            if not text.isascii():
                raise ValueError
            number = float(text)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        else:
            raise ValueError
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError
        return number
    if expected is str:
        if isinstance(value, str):
            return _clean_text(value)
        raise ValueError
    raise TypeError(f"unsupported setting type {expected!r}")


def _expectation(expected: Any) -> str:
    text = _describe(expected)
    return text + " without control characters" if expected is str else text


def _check_rules(coerced: Any, expected: Any, rules: Mapping[str, Any]) -> str | None:
    """What a coerced value breaks of its field's rules (bounds, text rules, rising steps); None if nothing."""
    if expected is str:
        if rules.get("required") and not coerced:
            return rules.get("expect") or "a non-empty string"
        pattern = rules.get("pattern")
        if pattern is not None and coerced and not pattern.fullmatch(coerced):
            return rules["expect"]
        return None
    low, high = rules.get("low"), rules.get("high")
    if high is None and (expected in (int, float) or typing.get_origin(expected) is tuple):
        high = _FLOAT_CEILING if expected is float else _INT_CEILING
    items = coerced if isinstance(coerced, tuple) else (coerced,)
    for item in items:
        if (low is not None and item < low) or (high is not None and item > high):
            span = f"between {low} and {high}" if low is not None else f"at most {high}"
            return f"a value {span}" if not isinstance(coerced, tuple) else f"a list of integers {span}"
    top = rules.get("rising_to")
    if top is not None and (any(b <= a for a, b in itertools.pairwise(items)) or items[-1] != top):
        return f"a rising list of integers ending with {top}, e.g. [10, 25, 50, 100]"
    return None


@functools.cache
def _schema(section_cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """(annotations, fields) of a settings class; resolving string annotations is slow, so once per class."""
    return typing.get_type_hints(section_cls), {f.name: f for f in dataclasses.fields(section_cls)}


def _check_field(section_cls: type, key: str, value: Any, where: str, section: str | None, *, from_text: bool) -> Any:
    hints, fields = _schema(section_cls)
    dotted = f"{section}.{key}" if section else key
    if key not in fields or key == "source" or (section is None and key in _SECTIONS):
        known = ", ".join(sorted(name for name in fields if name != "source"))
        # The value is not repeated: an unknown key may be a misspelt credential.
        if section is None and isinstance(value, Mapping):
            raise ConfigError(
                f"{where}: unknown section [{_show(key)[1:-1]}] (known sections: "
                f"{', '.join(sorted(_SECTIONS))}, keymap)"
            )
        raise ConfigError(f"{where}: unknown key {_show(dotted)} (known keys: {known})")
    expected = hints[key]
    try:
        coerced = _coerce(value, expected, from_text=from_text)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{where}: {dotted} = {_show(value)}: expected {_expectation(expected)}") from None
    broken = _check_rules(coerced, expected, fields[key].metadata)
    if broken is not None:
        raise ConfigError(f"{where}: {dotted} = {_show(value)}: expected {broken}")
    return coerced


def _reject_credentials(table: Mapping[str, Any], where: str, path: str = "") -> None:
    for key, value in table.items():
        dotted = f"{path}{key}"
        if key.lower() in _CREDENTIAL_KEYS or key.lower().endswith(("_sk", "_secret", "_password")):
            raise ConfigError(
                f"{where}: key {_show(dotted)} looks like a credential; credentials are never read from a config "
                "file — set HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK / HUAWEICLOUD_SDK_PROJECT_ID in the "
                "environment or use the SDK credentials file"
            )
        if isinstance(value, Mapping) and key != "keymap":
            _reject_credentials(value, where, f"{dotted}.")


def _check_keymap(value: Any, where: str) -> dict[str, str]:
    expectation = 'a table of binding id = "keys" strings, e.g. "upload.start" = "ctrl+u"'
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: keymap = {_show(value)}: expected {expectation}")
    for binding, keys in value.items():
        try:
            if not isinstance(keys, str) or not keys.strip():
                raise ValueError
            _clean_text(binding)
            _clean_text(keys)
        except ValueError:
            raise ConfigError(
                f"{where}: keymap.{_show(binding)} = {_show(keys)}: expected "
                'non-empty keys as a string without control characters, e.g. "ctrl+u"'
            ) from None
    return dict(value)


def _apply_table(values: dict[str, Any], table: Mapping[str, Any], where: str) -> None:
    """Merge a parsed TOML table into `values` (a nested dict of already-checked settings)."""
    for key, value in table.items():
        if key == "keymap":
            values["keymap"] = {**values.get("keymap", {}), **_check_keymap(value, where)}
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{where}: [{key}] must be a table, got {_show(value)}: expected [{key}] with "
                    "its keys on the lines below"
                )
            section = values.setdefault(key, {})
            for sub_key, sub_value in value.items():
                section[sub_key] = _check_field(_SECTIONS[key], sub_key, sub_value, where, key, from_text=False)
        else:
            values[key] = _check_field(Settings, key, value, where, None, from_text=False)


def _read_file(path: Path) -> dict[str, Any]:
    """Parse a config file; anything but a readable, small, UTF-8 TOML regular file is a ConfigError.

    The file is opened without blocking and checked before it is read, so a FIFO cannot hang the
    command and a device such as /dev/zero cannot fill memory.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a folder, expected a TOML file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: is not a regular file (a FIFO, socket or device), expected a TOML file")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KB, expected a TOML config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not valid UTF-8 (byte {data[error.start]:#04x} at offset {error.start}); save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    except ValueError as error:  # tomllib lets int()'s digit limit through for a huge integer
        raise ConfigError(f"{path}: not valid TOML ({_show(str(error))[1:-1]})") from None


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str | None, str, str]]:
    """(variable, section, key, text) for every `ARSL_*` variable that names a setting."""
    overrides: list[tuple[str, str | None, str, str]] = []
    top_level = {f.name for f in dataclasses.fields(Settings)} - set(_SECTIONS) - {"keymap", "source"}
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in (CONFIG_ENV, HOME_ENV):
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        if name in top_level:
            overrides.append((variable, None, name, text))
            continue
        for section in _SECTIONS:
            if name.startswith(section + "_"):
                overrides.append((variable, section, name[len(section) + 1 :], text))
                break
    return overrides


def _materialise(values: Mapping[str, Any], source: str) -> Settings:
    sections = {name: cls(**values.get(name, {})) for name, cls in _SECTIONS.items()}
    top = {key: value for key, value in values.items() if key not in _SECTIONS}
    return Settings(**top, **sections, source=source)


def load_settings(
    config_path: str | Path | None = None,
    *,
    cli_overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Load settings with the documented precedence; raises ConfigError on any bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    source = "defaults"
    if config_path is None and environ.get(CONFIG_ENV):
        config_path = environ[CONFIG_ENV]
    if config_path is not None:
        path = Path(config_path).expanduser()
    else:
        local = (cwd or Path.cwd()) / "config.toml"
        # A ./config.toml that is there but no file (a folder, a FIFO) is an error, not silently skipped.
        path = local if local.exists() else None  # type: ignore[assignment]
    if path is not None:
        table = _read_file(path)
        _reject_credentials(table, str(path))
        _apply_table(values, table, str(path))
        source = str(path)
    for variable, section, key, text in _env_overrides(environ):
        where = f"environment variable {variable}"
        target = _SECTIONS[section] if section else Settings
        checked = _check_field(target, key, text, where, section, from_text=True)
        if section:
            values.setdefault(section, {})[key] = checked
        else:
            values[key] = checked
    for dotted, value in (cli_overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        where = f"command-line option for {dotted}"
        if section:
            values.setdefault(section, {})[key] = _check_field(
                _SECTIONS[section], key, value, where, section, from_text=isinstance(value, str)
            )
        else:
            values[key] = _check_field(Settings, key, value, where, None, from_text=isinstance(value, str))
    return _materialise(values, source)


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """Plain data for `--json` and the console; holds no credential since settings never do."""
    data = dataclasses.asdict(settings)
    data["keymap"] = dict(settings.keymap)
    return data


__all__ = ["ConfigError", "Settings", "default_home", "load_settings", "settings_as_dict"]
