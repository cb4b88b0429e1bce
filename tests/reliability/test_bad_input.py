"""Bad input at every door: config files and variables, command-line arguments, data set folders, image bytes.

Each kind of bad input must get a clear error that names where it came from, what was wrong and what
was expected — never a traceback, never a silent default, never a raw control character on the
terminal, never a write outside the places the command owns. The keys and commands fuzzed are
enumerated from the code (settings dataclasses, the argparse tree), not listed here.

`ARSL_RELIABILITY_RUNS` scales the hypothesis examples (CI: the default).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arsl_tui.cli import main
from arsl_tui.config import MAX_CONFIG_BYTES, ConfigError, load_settings
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.keys import check_relative_path
from tests.conftest import DatasetFactory, jpeg_bytes
from tests.reliability import bad_input_support as bad
from tests.reliability.conftest import reliability_runs

ROOT = Path(__file__).resolve().parents[2]
ARSL = [sys.executable, "-m", "arsl_tui"]
"""The real entry point in a process of its own (the `arsl` script runs the same main)."""
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than newline and tab: none may reach a terminal from the input."""


def examples(default: int) -> settings:
    """`default` examples in CI; ARSL_RELIABILITY_RUNS=N makes it N times as many."""
    return settings(
        max_examples=default * reliability_runs(1),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


KEYS = bad.config_keys()
ENV_KEYS = [key for key in KEYS if key.env_var not in ("ARSL_HOME", "ARSL_CONFIG")]
"""`home` has no ARSL_HOME override: that variable names the state folder itself (and keeps its meaning)."""


def _isolated_env(home: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    return {**env, "ARSL_HOME": str(home), "HOME": str(home.parent / "user-home"), **extra}


# --- 1. config --------------------------------------------------------------------------------------

_numbers = itertools.count()


def _new_file(folder: Path, data: bytes) -> Path:
    """A new file each time: rewriting one file costs ~10× more on overlay file systems."""
    path = folder / f"config-{next(_numbers)}.toml"
    path.write_bytes(data)
    return path


def _assert_names(message: str, *fragments: str) -> None:
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message[:300]}"
    assert "expected" in message or "looks like a credential" in message, message[:300]
    assert len(message) < 1200, f"a {len(message)}-character message: huge values must be cut"
    assert not RAW_CONTROL.search(message) and "\n" not in message, f"raw control character in {message!r}"


def test_every_key_refuses_every_wrong_value_in_a_file(tmp_path: Path) -> None:
    assert {key.section for key in KEYS} >= {None, "upload", "gateway", "canary", "storage"}, "enumeration broke"
    checked = 0
    for key in KEYS:
        for value in bad.wrong_file_values(key):
            path = _new_file(tmp_path, key.file_text(value).encode())
            with pytest.raises(ConfigError) as caught:
                load_settings(path, environ={}, cwd=tmp_path)
            _assert_names(str(caught.value), str(path), key.dotted, bad.shown_fragment(value))
            checked += 1
    assert checked > 8 * len(KEYS)


def test_every_key_refuses_every_unparsable_environment_value(tmp_path: Path) -> None:
    for key in ENV_KEYS:
        for text in bad.wrong_env_texts(key):
            with pytest.raises(ConfigError) as caught:
                load_settings(environ={key.env_var: text}, cwd=tmp_path)
            _assert_names(
                str(caught.value), f"environment variable {key.env_var}", key.dotted, bad.shown_fragment(text)
            )


TOML_VALUES = st.recursive(
    st.none().map(lambda _: "") | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3),
    max_leaves=8,
)


@examples(150)
@given(key=st.sampled_from(KEYS), value=TOML_VALUES)
def test_any_file_value_is_either_taken_as_written_or_refused_by_name(
    tmp_path: Path, key: bad.ConfigKey, value: Any
) -> None:
    path = _new_file(tmp_path, key.file_text(value).encode())
    try:
        loaded = load_settings(path, environ={}, cwd=tmp_path)
    except ConfigError as error:
        _assert_names(str(error), str(path), key.dotted)
        return
    taken = getattr(getattr(loaded, key.section) if key.section else loaded, key.name)
    assert bad.accepted_value_is_sane(key, taken), f"{key.dotted} = {value!r} accepted as {taken!r}"
    written = tuple(value) if key.kind == "steps" else value
    assert taken == written or (key.kind == "float" and taken == float(written)), "not the value written"


@examples(150)
@given(
    key=st.sampled_from(ENV_KEYS),
    text=st.text(st.characters(exclude_characters="\x00"), max_size=40)
    | st.sampled_from(["nan", "inf", "-1", "0", "1e999", "99999999999999999999", " 7 ", "1_000", "٣"]),
)
def test_any_environment_value_is_either_parsed_or_refused_by_name(
    tmp_path: Path, key: bad.ConfigKey, text: str
) -> None:
    try:
        loaded = load_settings(environ={key.env_var: text}, cwd=tmp_path)
    except ConfigError as error:
        _assert_names(str(error), key.env_var, key.dotted)
        return
    taken = getattr(getattr(loaded, key.section) if key.section else loaded, key.name)
    assert bad.accepted_value_is_sane(key, taken), f"{key.env_var}={text!r} accepted as {taken!r}"
    if key.kind == "str":
        assert taken == text, "a string variable is taken as it is"


def test_unknown_keys_sections_and_credentials_are_named_but_their_values_never_echoed(tmp_path: Path) -> None:
    secret = "CANARY-9d1f0c2b7e"
    cases = {
        f'[upload]\nconcurrenzy = "{secret}"\n': ["unknown key", "upload.concurrenzy", "concurrency"],
        f'[uplaod]\nconcurrency = "{secret}"\n': ["unknown section [uplaod]", "upload"],
        f'bogus = "{secret}"\n': ["unknown key", "'bogus'"],
        f'[huawei]\nsk = "{secret}"\n': ["huawei.sk", "credential"],
        f'[storage]\nobs_secret = "{secret}"\n': ["storage.obs_secret", "credential"],
        f'[[upload]]\nconcurrency = "{secret}"\n': ["[upload] must be a table"],
        f'[keymap]\n"upload.start" = ["{secret}"]\n': ["keymap", "upload.start"],
    }
    path = tmp_path / "c.toml"
    for text, fragments in cases.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, environ={}, cwd=tmp_path)
        message = str(caught.value)
        assert str(path) in message and all(fragment in message for fragment in fragments), message
        if "keymap" not in text and "[[" not in text:
            assert secret not in message, f"the value of an unknown or credential key was echoed: {message}"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"ARSL_HUAWEI_SK": secret}, cwd=tmp_path)
    assert "ARSL_HUAWEI_SK" in str(caught.value) and secret not in str(caught.value)


def _load_in_thread(path: Path, tmp_path: Path) -> BaseException | None:
    """load_settings(path) on a thread, so a file that blocks (a FIFO) fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_settings(path, environ={}, cwd=tmp_path)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, f"loading {path} did not return within 10 s (it blocked)"
    return outcome[0]


def test_files_that_are_no_toml_are_refused_by_path(tmp_path: Path) -> None:
    files: dict[str, tuple[Path, str]] = {}

    def make(name: str, data: bytes, says: str) -> None:
        (tmp_path / name).write_bytes(data)
        files[name] = (tmp_path / name, says)

    make("syntax.toml", b"[upload\nconcurrency = 3\n", "not valid TOML")
    make("latin1.toml", 'backend = "lócal"\n'.encode("latin-1"), "not valid UTF-8")
    make("binary.toml", bytes(range(256)) * 4, "not valid")
    make("nested.toml", b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply")
    make("tables.toml", b"a = " + b"{b=" * 5000 + b"1" + b"}" * 5000, "nested too deeply")
    make("bigint.toml", b"[upload]\nconcurrency = " + b"9" * 5000 + b"\n", "not valid TOML")
    make("huge.toml", b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), "larger than")
    os.mkfifo(tmp_path / "fifo.toml")
    files["fifo.toml"] = (tmp_path / "fifo.toml", "not a regular file")
    (tmp_path / "folder.toml").mkdir()
    files["folder.toml"] = (tmp_path / "folder.toml", "is a folder")
    files["device"] = (Path("/dev/zero"), "not a regular file")
    files["missing"] = (tmp_path / "absent.toml", "not found")
    files["too-long"] = (tmp_path / ("n" * 300 + ".toml"), "cannot be read")
    files["under-a-file"] = (tmp_path / "syntax.toml" / "x.toml", "cannot be read")
    if os.geteuid() != 0:
        make("unreadable.toml", b"backend = 'local'\n", "cannot be read")
        (tmp_path / "unreadable.toml").chmod(0)
    elif Path("/proc/self/mem").exists():  # root reads any mode; reading this file fails with EIO
        files["unreadable"] = (Path("/proc/self/mem"), "cannot be read")
    for name, (path, says) in files.items():
        error = _load_in_thread(path, tmp_path)
        assert isinstance(error, ConfigError), f"{name}: {error!r}"
        message = str(error)
        assert message.startswith(str(path)) and says in message, f"{name}: {message}"
        assert len(message) < 1200 and not RAW_CONTROL.search(message), f"{name}: {message!r}"


@examples(60)
@given(data=st.binary(max_size=400) | st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_as_a_config_file_load_or_fail_by_path(tmp_path: Path, data: bytes) -> None:
    path = _new_file(tmp_path, data)
    try:
        load_settings(path, environ={}, cwd=tmp_path)
    except ConfigError as error:
        assert str(error).startswith(str(path)), str(error)


def test_a_config_toml_in_the_working_folder_that_is_no_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        load_settings(environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("how", "content", "says"),
    [
        ("file", "[upload]\nconcurrency = 'many'\n", "upload.concurrency = 'many': expected an integer"),
        ("file", '[gateway]\nhost = "\\u001b[2Jgone"\n', "gateway.host = '\\x1b[2Jgone'"),
        ("env", "ARSL_GATEWAY_PORT=99999", "ARSL_GATEWAY_PORT: gateway.port = '99999': expected a value between"),
        ("env-config", "folder", "is a folder, expected a TOML file"),
    ],
)
def test_the_real_cli_stops_with_exit_2_and_one_clear_line(tmp_path: Path, how: str, content: str, says: str) -> None:
    home = tmp_path / "home"
    env = _isolated_env(home)
    command = [*ARSL, "status"]
    if how == "file":
        (tmp_path / "bad.toml").write_text(content, encoding="utf-8")
        command += ["--config", str(tmp_path / "bad.toml")]
    elif how == "env":
        name, _, value = content.partition("=")
        env[name] = value
    else:
        (tmp_path / "cfg").mkdir()
        env["ARSL_CONFIG"] = str(tmp_path / "cfg")
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config error: "), done.stderr
    assert says in lines[0] and "Traceback" not in done.stderr and not RAW_CONTROL.search(done.stderr)
    assert not home.exists() or not any(home.iterdir()), "nothing may be written before the config is read"


# --- 2. the command line ----------------------------------------------------------------------------

LEAVES = bad.cli_leaves()
NOT_RUN = {
    "console": "starts the full-screen console; only bad config and usage errors reach it here",
    "service start": "starts the gateway process; only usage errors here",
    "pipeline run": "runs the whole workflow; only arguments its validation refuses (test below)",
}
"""Commands that would start long work: run with arguments that fail parsing only."""
SAFE_EXTRAS = {"alarms watch": ["--once"], "data synth": ["--per-class", "1"]}
"""Added to every fuzzed run of these commands, so a garbage value that happens to be valid ends quickly."""
FIXED_ONLY = {"--endpoint"}
"""Options that would send requests to whatever host the value names: fuzzed with fixed values only."""
NEVER_A_NUMBER = ["-1", "nan", "inf", "-inf", "1e309", "99999999999999999999", "", "x", "１"]
"""Out of range or no number at all for every numeric option there is (all are bounded)."""
GARBAGE = [
    "",
    "-",
    "..",
    "../..",
    ".",
    "\x1b[31mred\x1b[0m",
    "two\nlines",
    "x" * 5000,
    "-1",
    "0",
    "99999999999999999999",
    "nan",
    "[bold]markup[/]",
    "\u202egpj.exe",
    "bad\udcffbyte",
    "%s%n{0}",
]
GARBAGE_TEXT = st.one_of(
    st.sampled_from(GARBAGE),
    st.text(st.characters(exclude_characters="\x00/", exclude_categories=("Cs",)), max_size=60).filter(
        lambda text: not text.startswith("~")
    ),
    st.lists(st.sampled_from(["..", ".", "-", "x", "\x1b[0m", " "]), min_size=1, max_size=3).map("/".join),
    st.integers(-(10**25), 10**25).map(str),
    st.floats().map(str),
)
"""Never an absolute path and never more than three '..': the working folder is three levels inside
tmp_path, so every path a command is told to write stays inside it (writing where told is not a fault)."""


class Sandbox:
    """$ARSL_HOME, $HOME, $TMPDIR and the working folder inside tmp_path; the folders outside it recorded."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.home = tmp_path / "arsl-home"
        self.cwd = tmp_path / "a" / "b" / "c"
        self.cwd.mkdir(parents=True)
        real_home = Path.home()
        for name in [name for name in os.environ if name.startswith("ARSL_")]:
            monkeypatch.delenv(name)
        for name, value in {
            "ARSL_HOME": self.home,
            "HOME": tmp_path / "user-home",
            "TMPDIR": tmp_path / "tmp",
            "XDG_DATA_HOME": tmp_path / "xdg-data",
            "XDG_CONFIG_HOME": tmp_path / "xdg-config",
            "XDG_CACHE_HOME": tmp_path / "xdg-cache",
        }.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.chdir(self.cwd)
        self.watched = {
            tmp_path.parent: {tmp_path.name},
            ROOT: {".hypothesis"},
            real_home: set(),
            real_home / ".local" / "share": set(),
            Path("/tmp"): None,
        }
        self.before = {folder: bad.listing(folder) for folder in self.watched}

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        """`arsl ARGV` in this process; any exception but SystemExit escapes (that is a traceback)."""
        try:
            code = main(argv)
        except SystemExit as stopped:
            code = stopped.code if isinstance(stopped.code, int) else 2
        out, err = self.capsys.readouterr()
        return code, out, err

    def written_outside(self) -> list[str]:
        new = []
        for folder, allowed in self.watched.items():
            added = bad.listing(folder) - self.before[folder] - (allowed or set())
            if folder == Path("/tmp"):  # shared with other processes: only names this suite's input could make
                marks = ("\x1b", "\n", "[bold]", "gpj.exe", "%s%n", "\udcff", "x" * 200)
                added = {name for name in added if any(mark in name for mark in marks)}
            new += [str(folder / name) for name in sorted(added)]
        return new


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path, monkeypatch, capsys)
    yield box
    assert box.written_outside() == [], "a command wrote outside $ARSL_HOME and tmp_path"


def _check(argv: list[str], code: int, out: str, err: str, *, usage: bool = False) -> None:
    shown = [part[:60] for part in argv]
    assert code in (0, 1, 2, 3), f"{shown}: exit {code}"
    assert "Traceback" not in out + err, f"{shown}: {err[-800:]}"
    assert not RAW_CONTROL.search(out) and not RAW_CONTROL.search(err), (
        f"{shown}: a raw control character reached the terminal: {(out + err)[-300:]!r}"
    )
    if code != 0:
        assert err.strip() or (code == 1 and out.strip()), f"{shown}: exit {code} without a word"
        assert len(max(err.splitlines(), key=len, default="")) < 3000, f"{shown}: a flood of a line"
    if usage:
        assert code == 2 and "arsl: error:" in err, f"{shown}: exit {code}: {err[-300:]}"


def _argv(leaf: bad.Leaf, slot: Any, value: str) -> list[str]:
    """`leaf` with `value` in `slot` (a positional or an option), fillers for the other required positionals."""
    argv = [*leaf.words]
    for positional in leaf.positionals:
        if positional is slot:
            argv.append(value)
        elif positional in leaf.required:
            argv.append("x")
    if slot in leaf.options:
        argv += [f"{slot.option_strings[0]}={value}"] if value.startswith("-") else [slot.option_strings[0], value]
    for option in leaf.required_options:
        if option is not slot:
            argv += [option.option_strings[0], "x"]
    return argv + SAFE_EXTRAS.get(leaf.name, [])


def _slots(leaf: bad.Leaf) -> list[Any]:
    return [*leaf.positionals, *leaf.options]


def test_the_tree_is_enumerated_from_the_parser() -> None:
    names = {leaf.name for leaf in LEAVES}
    assert {"data validate", "upload", "train submit", "gateway keys create", "alarms silence"} <= names
    assert len(names) >= 35 and set(NOT_RUN) <= names


def test_every_command_refuses_missing_and_unknown_arguments(sandbox: Sandbox) -> None:
    for leaf in LEAVES:
        if leaf.required:
            argv = [*leaf.words]
            code, out, err = sandbox.run(argv)
            _check(argv, code, out, err, usage=True)
            assert "required" in err, f"{leaf.name}: {err}"
        fillers = ["x" for _ in leaf.required] + [
            part for option in leaf.required_options for part in (option.option_strings[0], "x")
        ]
        for extra in (["--no-such-option"], ["--no-such-option=\x1b[2J"], ["surplus-1", "surplus-2"]):
            if extra[0].startswith("surplus") and any(p.nargs in ("*", "+") for p in leaf.positionals):
                continue  # a list of positionals takes surplus words
            argv = [*leaf.words, *fillers, *extra]
            code, out, err = sandbox.run(argv)
            _check(argv, code, out, err, usage=True)
            assert "unrecognized arguments" in err, f"{leaf.name}: {err}"


def test_groups_without_their_action_are_usage_errors(sandbox: Sandbox) -> None:
    groups = {leaf.words[:depth] for leaf in LEAVES for depth in range(1, len(leaf.words))}
    assert groups >= {("data",), ("train",), ("gateway", "keys")}
    for words in sorted(groups):
        code, out, err = sandbox.run(list(words))
        _check(list(words), code, out, err, usage=True)
        assert "needs an action" in err and out == "", f"{words}: {err[-200:]}"


def test_numeric_options_refuse_what_is_no_number_in_range(sandbox: Sandbox) -> None:
    numeric = [(leaf, option) for leaf in LEAVES for option in leaf.options if bad.takes_number(option)]
    assert len(numeric) >= 15, [option.option_strings for _, option in numeric]
    for leaf, option in numeric:
        for value in NEVER_A_NUMBER:
            argv = _argv(leaf, option, value)
            code, out, err = sandbox.run(argv)
            _check(argv, code, out, err, usage=True)
            assert f"argument {option.option_strings[0]}" in err, f"{argv[:4]}: {err[-200:]}"


def test_every_argument_of_every_command_takes_garbage_without_a_traceback(sandbox: Sandbox) -> None:
    # Each slot gets `per_slot` values, rotating through GARBAGE so that every value meets many commands;
    # a longer run (ARSL_RELIABILITY_RUNS ≥ 16) gives every slot every value.
    per_slot = min(len(GARBAGE), reliability_runs(4))
    runs = 0
    rotation = itertools.cycle(range(len(GARBAGE)))
    for leaf in LEAVES:
        if leaf.name in NOT_RUN:
            continue
        for slot in _slots(leaf):
            start = next(rotation)
            for offset in range(per_slot):
                argv = _argv(leaf, slot, GARBAGE[(start + offset * 7) % len(GARBAGE)])
                code, out, err = sandbox.run(argv)
                _check(argv, code, out, err)
                runs += 1
    assert runs >= 100


@examples(40)
@given(choice=st.data())
def test_any_garbage_in_any_argument_gets_a_clear_answer(sandbox: Sandbox, choice: st.DataObject) -> None:
    leaf = choice.draw(st.sampled_from([leaf for leaf in LEAVES if leaf.name not in NOT_RUN and _slots(leaf)]))
    slot = choice.draw(st.sampled_from(_slots(leaf)))
    fixed = bool(set(getattr(slot, "option_strings", [])) & FIXED_ONLY)
    value = choice.draw(st.sampled_from(GARBAGE) if fixed else GARBAGE_TEXT)
    argv = _argv(leaf, slot, value)
    code, out, err = sandbox.run(argv)
    _check(argv, code, out, err)


def test_long_work_commands_stop_at_their_validation(sandbox: Sandbox) -> None:
    for argv in (
        ["pipeline", "run"],
        ["pipeline", "run", "--demo", "--per-class", "0"],
        ["pipeline", "run", "--demo", "--per-class", "-5"],
        ["pipeline", "run", "--demo", "x"],
        ["console", "--theme"],
        ["service", "start", "--bogus"],
        ["train", "submit", ""],
        ["train", "submit", "..", "--yes"],
        ["train", "submit", "   "],
        ["data", "synth", "..", "--per-class", "1"],
        ["data", "synth", ".", "--per-class", "1"],
        ["data", "synth", "x", "--seed", "-1"],
        ["data", "validate", ".."],
        ["data", "validate", "../..", "--manifest", ""],
    ):
        code, out, err = sandbox.run(argv)
        _check(argv, code, out, err)
        assert code == 2, f"{argv}: exit {code}: {err[-300:]}"
    assert not (sandbox.home / "jobs").exists() or not any((sandbox.home / "jobs").iterdir()), "a job was started"
    assert not list(sandbox.tmp_path.rglob("manifest.json")), "a manifest was written into a folder with no data set"


def test_garbage_reaches_the_real_process_as_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        (["upload", "\x1b[31mred"], 2, "\\x1b[31mred: no such folder"),
        (["data", "validate", "n" * 5000], 2, "File name too long"),
        (["train", "status", "--limit", "99999999999999999999"], 2, "expected a whole number"),
        (["alarms", "watch", "--interval", "nan"], 2, "expected a number above 0"),
        (["data"], 2, "needs an action"),
    ]
    for argv, exit_code, says in cases:
        done = subprocess.run(
            [*ARSL, *argv],
            cwd=tmp_path,
            env=_isolated_env(home),
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        assert done.returncode == exit_code and says in last, f"{argv[:3]}: {done.returncode}: {done.stderr[-400:]}"
        assert "Traceback" not in done.stderr and not RAW_CONTROL.search(done.stderr + done.stdout)


# --- 3. data set folders with hostile names ---------------------------------------------------------


@pytest.fixture
def hostile(make_dataset: DatasetFactory, tmp_path: Path) -> bad.HostileSet:
    return bad.hostile_dataset(make_dataset(per_class=2), tmp_path / "outside")


def _problems(payload: dict[str, Any]) -> dict[str, str]:
    return {item["path"]: item["kind"] for item in payload["problems"]}


def test_validate_names_every_hostile_entry_safely_and_reads_nothing_through_a_link(
    sandbox: Sandbox, hostile: bad.HostileSet
) -> None:
    outside_before = bad.tree(hostile.outside)
    code, out, err = sandbox.run(["data", "validate", str(hostile.root), "--json"])
    _check(["data", "validate"], code, out, err)
    assert code == 1, err[-500:]
    report = json.loads(out)
    found = _problems(report)
    for path, kind in hostile.expected.items():
        assert found.get(path) == kind, f"{path!r}: expected {kind}, got {found.get(path)}"
    manifest = json.loads((hostile.root / "manifest.json").read_text(encoding="utf-8"))
    listed = {image["path"]: image["md5"] for image in manifest["images"]}
    assert hostile.accepted <= set(listed), "odd but harmless names are images like any other"
    assert not set(listed) & (set(hostile.expected) | hostile.hidden), "no problem file may enter the manifest"
    assert not set(listed.values()) & hostile.outside_md5s, "an image outside the folder was read through a link"
    assert bad.tree(hostile.outside) == outside_before

    code, out, err = sandbox.run(["data", "validate", str(hostile.root)])
    _check(["data", "validate"], code, out, err)
    assert code == 1
    lines = out.splitlines()
    for path, kind in hostile.expected.items():
        shown = path.replace("\x1b", "\\x1b").replace("\n", "\\n").replace("\x07", "\\x07").replace("\r", "\\r")
        assert any(shown in line and kind in line for line in lines), f"{shown!r} ({kind}) not listed"
    assert "\u202e" not in out + err, "a bidi override was printed raw"


@pytest.mark.parametrize("mode", ["files", "shards"])
def test_upload_keeps_every_object_inside_the_data_sets_prefix(
    sandbox: Sandbox, hostile: bad.HostileSet, mode: str
) -> None:
    refused = sandbox.run(["upload", str(hostile.root), "--yes", "--mode", mode])
    _check(["upload"], *refused)
    assert refused[0] == 1 and "PROBLEM" in refused[2]
    dataset_before = bad.tree(hostile.root)
    outside_before = bad.tree(hostile.outside)
    code, out, err = sandbox.run(["upload", str(hostile.root), "--yes", "--mode", mode, "--allow-problems", "--json"])
    _check(["upload"], code, out, err)
    assert code == 0, err[-800:]
    outcome = json.loads(out.splitlines()[-1])
    manifest_id = outcome["manifest_id"]
    store = sandbox.home / "store" / "arsl-ml"
    keys = sorted(bad.iter_store_keys(store))
    assert keys, "nothing was uploaded"
    for key in keys:
        assert key.startswith(f"datasets/{manifest_id}/"), f"{key!r} is outside the data set's prefix"
        check_relative_path(key)
    if mode == "files":
        assert {f"datasets/{manifest_id}/files/{name}" for name in hostile.accepted} <= set(keys)
    stored = set()
    for key in keys:
        data = (store / key).read_bytes()
        stored.add(hashlib.md5(data, usedforsecurity=False).hexdigest())
        if key.endswith(".tar.gz"):
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                for member in archive.getmembers():
                    check_relative_path(member.name)
                    assert member.isfile(), f"{member.name!r} in a shard is no plain file"
                    content = archive.extractfile(member)
                    assert content is not None
                    stored.add(hashlib.md5(content.read(), usedforsecurity=False).hexdigest())
    assert not stored & hostile.outside_md5s, "an image outside the folder reached the store through a link"
    assert bad.tree(hostile.outside) == outside_before, "the folder the links point into was changed"
    after = bad.tree(hostile.root)
    changed = {path for path in set(after) | set(dataset_before) if after.get(path) != dataset_before.get(path)}
    assert changed <= {"manifest.json", "shards.json"}, f"upload changed the data set folder: {sorted(changed)}"


def test_names_at_the_path_length_limit_are_problems_not_crashes(sandbox: Sandbox, tmp_path: Path) -> None:
    root = bad.deep_folder(tmp_path / "deep", 3900)
    for index, name in enumerate(ARSL_CLASSES):
        (root / name).mkdir()
        (root / name / f"{name}.jpg").write_bytes(jpeg_bytes(index))
    folder = os.open(root / "ain", os.O_RDONLY)
    try:  # 3900 + 255 bytes: past PATH_MAX, so it can only be made (and read) relative to its folder
        made = os.open("n" * 251 + ".jpg", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=folder)
        os.write(made, jpeg_bytes(99))
        os.close(made)
    finally:
        os.close(folder)
    code, out, err = sandbox.run(["data", "validate", str(root), "--json"])
    _check(["data", "validate", "<deep>"], code, out, err)
    assert code == 1
    found = _problems(json.loads(out))
    assert found == {"ain/" + "n" * 251 + ".jpg": "unreadable"}, found
    assert json.loads(out)["images"] == 32


# --- 4. image bytes to the predict API ----------------------------------------------------------------

MAX_BODY_KB = 256


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real gateway app under uvicorn (the serving suite's fixture code), one model version."""
    from arsl_tui.domain.serving import Deployment
    from tests.serving.conftest import start_gateway
    from tests.serving.packages import export_random_package

    root = tmp_path_factory.mktemp("bad-images")
    package = export_random_package(root / "v1", seed=1)
    live = start_gateway(
        root / "home",
        {"v1": package},
        Deployment(stable="v1", weights={"v1": 100}),
        {"gateway.max_body_kb": MAX_BODY_KB},
    )
    live.package = package
    yield live
    live.close()


@pytest.fixture(scope="module")
def client(gateway: Any) -> Iterator[httpx.Client]:
    with gateway.client(headers=gateway.headers) as session:
        yield session


def _post(
    client: httpx.Client, body: Any, content_type: str | None = "application/octet-stream", path: str = "/v1/predict"
) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return client.post(path, content=body, headers=headers)


def _assert_refused(response: httpx.Response, statuses: set[int], says: str = "") -> None:
    assert response.status_code in statuses, f"{response.status_code}: {response.text[:300]}"
    error = response.json()
    assert error["error"] and error["code"], error
    assert says in error["error"], error


_JPEG = bad.encoded(bad.noise((64, 64), "L", 1), "JPEG")
_PNG = bad.encoded(bad.noise((64, 64), "L", 2), "PNG")
HOSTILE_BODIES: dict[str, tuple[bytes, str | None, set[int], str]] = {
    "zero-length": (b"", "image/jpeg", {422}, "empty"),
    "jpeg cut to 2 bytes": (_JPEG[:2], "image/jpeg", {422}, ""),
    "jpeg cut to 100 bytes": (_JPEG[:100], "image/jpeg", {422}, ""),
    "jpeg cut in half": (_JPEG[: len(_JPEG) // 2], "image/jpeg", {422}, ""),
    "jpeg missing its end marker": (_JPEG[:-2], "image/jpeg", {422}, "truncated"),  # as training refuses it
    "png cut after its header": (_PNG[:40], "image/png", {422}, ""),
    "png cut in half": (_PNG[: len(_PNG) // 2], "image/png", {422}, ""),
    "png declaring 100000x100000": (bad.png_declaring(100_000, 100_000), "image/png", {422}, "pixels"),
    "png declaring 5000x4000, all of it there": (
        bad.png_declaring(5000, 4000, rows=4000),
        "image/png",
        {422},
        "5000×4000",
    ),
    "gif declaring 65535x65535": (bad.gif_declaring(65_535, 65_535), "image/gif", {422}, "pixels"),
    "jpeg declaring 65500x65500": (bad.jpeg_declaring(65_500, 65_500), "image/jpeg", {422}, "pixels"),
    "a jpeg sent as text/plain": (_JPEG, "text/plain", {415}, "Content-Type"),
    "a jpeg sent as JSON": (_JPEG, "application/json", {422}, "JSON"),
    "a jpeg sent as multipart without a boundary": (_JPEG, "multipart/form-data", {422}, "multipart"),
    "a jpeg with no Content-Type": (_JPEG, None, {415}, "Content-Type"),
    **{
        f"{name} (a format not taken)": (data, "application/octet-stream", {422}, "")
        for name, data in bad.other_formats().items()
    },
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_image_bytes_get_a_clear_4xx(client: httpx.Client, name: str) -> None:
    body, content_type, statuses, says = HOSTILE_BODIES[name]
    for path in ("/v1/predict", "/v1/predict/batch"):
        _assert_refused(_post(client, body, content_type, path), statuses, says)


def test_bodies_above_the_limit_get_413_declared_or_streamed(client: httpx.Client) -> None:
    big = os.urandom(MAX_BODY_KB * 1024 + 1)
    _assert_refused(_post(client, big, "image/jpeg"), {413}, "bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        for _ in range(64):
            yield b"\xff" * 65_536

    _assert_refused(_post(client, chunks(), "image/jpeg"), {413}, "exceeds")


EXOTIC_BUT_VALID = {
    "animated GIF": bad.animated_gif(),
    "16-bit gray PNG": bad.png16(),
    "16-bit RGB PNG": bad.rgb16_png(),
    "CMYK JPEG": bad.cmyk_jpeg(),
}


@pytest.mark.parametrize("name", list(EXOTIC_BUT_VALID))
def test_exotic_but_valid_images_are_classified_as_the_trainer_would(
    client: httpx.Client, gateway: Any, name: str
) -> None:
    from trainer.predict import Predictor

    data = EXOTIC_BUT_VALID[name]
    response = _post(client, data, "application/octet-stream")
    assert response.status_code == 200, response.text
    want = Predictor.load(gateway.package).predict([data])[0][0]
    assert response.json()["label"] == want.label


SEEDS = [
    _JPEG,
    _PNG,
    bad.animated_gif(2),
    bad.png16(),
    bad.cmyk_jpeg(),
    bad.png_declaring(64, 64, rows=64),
    bad.encoded(bad.noise((40, 30), "RGB", 7), "WEBP"),
    bad.encoded(bad.noise((20, 20), "P", 8), "BMP"),
    bad.encoded(bad.noise((20, 20), "RGB", 9), "TIFF"),
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["truncate", "flip", "insert", "dims", "repeat"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "truncate":
            del data[at:]
        elif action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif action == "dims" and data[:4] == b"\x89PNG" and len(data) > 24:  # an IHDR with any size
            data[16:24] = draw(st.binary(min_size=8, max_size=8))
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 4096))] * draw(st.integers(1, 8))
    return bytes(data)


@examples(60)
@given(
    data=mutated_images(),
    path=st.sampled_from(["/v1/predict", "/v1/predict/batch"]),
    content_type=st.sampled_from(["application/octet-stream", "image/png", "image/jpeg", "image/gif"]),
)
def test_any_mutated_image_gets_an_answer_and_never_a_server_error(
    client: httpx.Client, data: bytes, path: str, content_type: str
) -> None:
    response = _post(client, data, content_type, path)
    if response.status_code != 200:
        _assert_refused(response, {413, 415, 422})


def test_memory_stays_bounded_under_decompression_bombs(gateway: Any) -> None:
    if not bad.reset_peak_rss():
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    bomb = bad.png_declaring(100_000, 100_000)  # 10 gigapixels declared in 177 bytes
    largest = bad.png_declaring(4000, 4000, depth=16, colour=6, rows=4000)  # the most the gateway decodes
    assert len(largest) < MAX_BODY_KB * 1024

    async def burst() -> list[int]:
        async with gateway.async_client(headers=gateway.headers) as session:

            async def post(body: bytes) -> int:
                response = await session.post("/v1/predict", content=body, headers={"Content-Type": "image/png"})
                return response.status_code

            return list(await asyncio.gather(*(post(bomb) for _ in range(20))))

    start = bad.rss_kb("VmRSS")
    assert asyncio.run(burst()) == [422] * 20
    bombs_peak_mb = (bad.rss_kb() - start) / 1024
    assert bombs_peak_mb < 64, f"20 bombs took {bombs_peak_mb:.0f} MB at their peak: they were decoded"

    async def biggest() -> list[int]:
        async with gateway.async_client(headers=gateway.headers) as session:

            async def post() -> int:
                response = await session.post("/v1/predict", content=largest, headers={"Content-Type": "image/png"})
                return response.status_code

            return list(await asyncio.gather(*(post() for _ in range(4))))

    bad.reset_peak_rss()
    start = bad.rss_kb("VmRSS")
    assert asyncio.run(biggest()) == [200] * 4
    peak_mb = (bad.rss_kb() - start) / 1024
    # Two decoding threads, each at most one 16-megapixel image (≈150 MB with Pillow's buffers): four at
    # once must queue, not stack up.
    assert peak_mb < 400, f"4 largest-allowed images at once took {peak_mb:.0f} MB at their peak"
    print(f"\npeak RSS growth: 20 bombs {bombs_peak_mb:.1f} MB, 4 × 4000×4000 RGBA16 {peak_mb:.0f} MB")


def test_the_gateway_is_healthy_after_all_of_it(client: httpx.Client) -> None:
    assert client.get("/v1/health").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'code="500"' not in metrics and 'reason="internal"' not in metrics


def test_a_file_swapped_for_a_symlink_after_listing_is_not_read_through(tmp_path: Path) -> None:
    """The check after `lstat` (a symlink swapped in between, or a FIFO) is the open itself: O_NOFOLLOW."""
    from arsl_tui.domain.manifest import SplitPolicy
    from arsl_tui.ops import dataset

    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes(1))
    (tmp_path / "ain").mkdir()
    (tmp_path / "ain" / "swapped.jpg").symlink_to(secret)
    os.mkfifo(tmp_path / "ain" / "fifo.jpg")
    split = SplitPolicy(seed=1, val=0.1, test=0.1)
    swapped = dataset._decode("ain/swapped.jpg", "ain", str(tmp_path / "ain" / "swapped.jpg"), split)
    assert swapped.record is None and swapped.problem is not None and swapped.problem.kind == "unreadable"
    fifo = dataset._decode("ain/fifo.jpg", "ain", str(tmp_path / "ain" / "fifo.jpg"), split)
    assert fifo.record is None and fifo.problem is not None and fifo.problem.kind == "not_a_file"
