"""Helpers of the security suite: planted canary secrets and where to look for them, a hostile echo
server, snapshots of `$ARSL_HOME`, the real listening sockets of a process, and a malicious pickle.

Canaries are recognisable fake credentials, new for every test run, set wherever the product reads
credentials (the huaweicloudsdkcore and OBS SDK variables, the SDK credentials file, `$ARSL_APP_CODE`).
A leak is any of their encodings (plain, base64 at each of the three alignments, hex, URL-quoted,
UTF-16) found in text or bytes.
"""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import secrets
import socket
import sqlite3
import string
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0

# --- canaries -------------------------------------------------------------------------------------


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Canaries:
    """One set of planted secrets; `secret_values` are those that must never show anywhere."""

    ak: str
    sk: str
    project_id: str
    token: str
    obs_ak: str
    obs_sk: str
    obs_token: str
    file_ak: str
    file_sk: str
    file_token: str
    app_code: str

    @classmethod
    def fresh(cls) -> Canaries:
        upper = string.ascii_uppercase + string.digits
        mixed = string.ascii_letters + string.digits
        # Shaped like the real ones (20-character access keys, 40-character secret keys), each with a
        # marker that is easy to spot by eye in a failure message.
        return cls(
            ak="CANARYAK" + _random(upper, 12),
            sk="CanarySK" + _random(mixed, 32),
            project_id="0c" + _random("0123456789abcdef", 30),
            token="CanaryTok" + _random(mixed, 55),
            obs_ak="CANARYOBSAK" + _random(upper, 9),
            obs_sk="CanaryObsSK" + _random(mixed, 29),
            obs_token="CanaryObsTok" + _random(mixed, 40),
            file_ak="CANARYFILEAK" + _random(upper, 8),
            file_sk="CanaryFileSK" + _random(mixed, 28),
            file_token="CanaryFileTok" + _random(mixed, 40),
            app_code="CanaryAppCode" + _random(mixed, 40),
        )

    def secret_values(self) -> dict[str, str]:
        """name → value of everything that must stay out of output, screens, files and exceptions.

        The access keys are included: a full AK names the account's key pair and belongs in no
        message (the product shows the first four characters at most)."""
        return {
            "HUAWEICLOUD_SDK_AK": self.ak,
            "HUAWEICLOUD_SDK_SK": self.sk,
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": self.token,
            "OBS_ACCESS_KEY_ID": self.obs_ak,
            "OBS_SECRET_ACCESS_KEY": self.obs_sk,
            "OBS_SECURITY_TOKEN": self.obs_token,
            "credentials file ak": self.file_ak,
            "credentials file sk": self.file_sk,
            "credentials file security_token": self.file_token,
            "ARSL_APP_CODE": self.app_code,
        }

    def write_credentials_file(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"[basic]\nak = {self.file_ak}\nsk = {self.file_sk}\nproject_id = {self.project_id}\n"
            f"security_token = {self.file_token}\n",
            encoding="utf-8",
        )
        return path

    def environment(self, credentials_file: Path) -> dict[str, str]:
        """Every variable the product (and the SDKs it uses) reads credentials from."""
        return {
            "HUAWEICLOUD_SDK_AK": self.ak,
            "HUAWEICLOUD_SDK_SK": self.sk,
            "HUAWEICLOUD_SDK_PROJECT_ID": self.project_id,
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": self.token,
            "OBS_ACCESS_KEY_ID": self.obs_ak,
            "OBS_SECRET_ACCESS_KEY": self.obs_sk,
            "OBS_SECURITY_TOKEN": self.obs_token,
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(credentials_file),
            "ARSL_APP_CODE": self.app_code,
        }


def encodings(secret: str) -> dict[str, bytes]:
    """The forms a secret could take in output or a file: plain, base64 (standard and URL-safe, at each
    of the three byte alignments inside a longer encoded blob), hex, URL-quoted, JSON-escaped, UTF-16."""
    raw = secret.encode()
    forms: dict[str, bytes] = {
        "plain": raw,
        "hex": binascii.hexlify(raw),
        "HEX": binascii.hexlify(raw).upper(),
        "url-quoted": quote(secret, safe="").encode(),
        "utf-16-le": secret.encode("utf-16-le"),
        "json-escaped": secret.replace("/", "\\/").encode(),
    }
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        # Keep only the characters whose 6 bits all come from the secret: the same characters appear
        # wherever the secret sits at this alignment inside a longer encoded blob.
        core = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        if len(core) >= 16:
            forms[f"base64@{shift}"] = core
            forms[f"base64url@{shift}"] = core.replace(b"+", b"-").replace(b"/", b"_")
    distinct: dict[str, bytes] = {}
    for form, pattern in forms.items():  # a secret of letters and digits is its own URL-quoted form
        if pattern not in distinct.values():
            distinct[form] = pattern
    return distinct


@dataclass
class LeakFinder:
    """Searches text and bytes for every encoding of every canary."""

    secrets_by_name: Mapping[str, str]
    _patterns: list[tuple[str, str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, value in self.secrets_by_name.items():
            for form, pattern in encodings(value).items():
                self._patterns.append((name, form, pattern))

    def find(self, data: str | bytes) -> list[str]:
        blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        return sorted({f"{name} ({form})" for name, form, pattern in self._patterns if pattern in blob})

    def scan(self, where: str, data: str | bytes, found: list[str]) -> None:
        """Append `where: what` to `found` for every canary in `data`."""
        found.extend(f"{where}: {hit}" for hit in self.find(data))

    def scan_tree(self, root: Path, found: list[str]) -> int:
        """Every file under `root`, binary-safe; returns how many files were read."""
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.scan(str(path), path.read_bytes(), found)
                count += 1
        return count


# --- a hostile server ----------------------------------------------------------------------------


class EchoServer:
    """Answers every request with an error whose message repeats the request's headers (Authorization,
    X-Security-Token, …), as a misconfigured proxy or a verbose service error can: JSON for the
    huaweicloudsdk clients, an S3/OBS `SignatureDoesNotMatch` XML body for the OBS client, with the
    `AWSAccessKeyId`, `StringToSign` and `SignatureProvided` elements real S3 servers send back."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="echo-server", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._thread.join(timeout=5)
        self._httpd.server_close()

    def _reply(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        with self._lock:
            self.requests.append(headers)
        dump = "; ".join(f"{name}: {value}" for name, value in headers.items())
        authorization = headers.get("Authorization", "")
        if authorization.startswith("SDK-HMAC-SHA256"):
            body = json.dumps(
                {
                    "error_code": "APIGW.0301",
                    "error_msg": f"Incorrect IAM authentication information: {method} {path} {dump}",
                }
            )
            return 401, "application/json", body.encode()
        access = (
            authorization.split("Credential=", 1)[-1].split("/", 1)[0]
            if "Credential=" in authorization
            else authorization.removeprefix("AWS ").removeprefix("OBS ").split(":", 1)[0]
        )
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
            f"<Message>{escape(f'The signature does not match: {method} {path} {dump}')}</Message>"
            f"<RequestId>echo-1</RequestId><AWSAccessKeyId>{escape(access)}</AWSAccessKeyId>"
            f"<StringToSign>{escape(dump)}</StringToSign><SignatureProvided>{escape(authorization)}"
            f"</SignatureProvided></Error>"
        )
        return 403, "application/xml", xml.encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, kind, body = server._reply(self.command, self.path, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Request-Id", "echo-1")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        return Handler


def closed_port() -> int:
    """A loopback port where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def huawei_endpoints(endpoint: str) -> dict[str, str]:
    """ARSL_* variables pointing every Huawei service at `endpoint`."""
    services = ("obs", "modelarts", "ces", "apig", "iam")
    return {f"ARSL_HUAWEI_{service.upper()}_ENDPOINT": endpoint for service in services}


# --- running the CLI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    in_process: bool = False

    @property
    def label(self) -> str:
        return "arsl " + " ".join(self.args) + (" (in-process)" if self.in_process else "")


def base_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without ARSL_* or credential variables, on `home`, plus `extra`."""
    dropped = ("ARSL_", "HUAWEICLOUD_", "OBS_")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    environment.update(
        {
            "ARSL_HOME": str(home),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "160",
            "NO_COLOR": "1",
            "HOME": str(home.parent / "user-home"),
        }
    )
    environment.update(extra or {})
    return environment


def run_cli(args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout_s: float = CLI_TIMEOUT_S) -> CliRun:
    """`arsl ARGS` as a separate process; stdin closed, so nothing can wait for an answer."""
    completed = subprocess.run(
        [sys.executable, "-m", "arsl_tui", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return CliRun(tuple(args), completed.returncode, completed.stdout, completed.stderr)


@contextlib.contextmanager
def process_environment(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """This process's environment is exactly `env`, and its working folder `cwd`, until the block ends."""
    saved, folder = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(folder)


def run_in_process(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> CliRun:
    """`arsl ARGS` through the CLI's own parser, handler and error reporting, in this process (a few
    milliseconds instead of a second of interpreter start-up), its output captured. An exception that
    escapes the CLI's handling is kept as a traceback on stderr, as a user would see it."""
    from arsl_tui.cli import build_parser
    from arsl_tui.cli.commands_console import check_top_level
    from arsl_tui.cli.common import CommandContext, run_command

    out, err = io.StringIO(), io.StringIO()
    with process_environment(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parser = build_parser()
            namespace = parser.parse_args(list(args))
            check_top_level(parser, namespace)
            context = CommandContext.from_namespace(namespace)
            context.stdout, context.stderr = out, err
            code = run_command(namespace.handler, context, namespace)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
        except Exception:
            err.write(traceback.format_exc())
            code = -1
    return CliRun(tuple(args), code, out.getvalue(), err.getvalue(), in_process=True)


def run_many(commands: Iterable[Sequence[str]], env: Mapping[str, str], cwd: Path, workers: int = 2) -> list[CliRun]:
    """Independent commands, `workers` at a time, in the order given."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda args: run_cli(args, env, cwd), [tuple(item) for item in commands]))


# --- $ARSL_HOME snapshots -------------------------------------------------------------------------

_SQLITE_MAGIC = b"SQLite format 3\0"
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted (the logical content, whatever the WAL holds)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        # Table names come from sqlite_master of a file the test made, quoted as identifiers.
        return {
            table: sorted(connection.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)  # noqa: S608
            for table in tables
        }
    finally:
        connection.close()


def home_snapshot(home: Path) -> dict[str, str]:
    """relative path → digest of every file under `home`; SQLite files by their rows (so a checkpoint
    that moves pages from the WAL into the file is no change), with their row counts alongside."""
    snapshot: dict[str, str] = {}
    for path in sorted(home.rglob("*")):
        relative = path.relative_to(home).as_posix()
        if path.is_dir() or relative.endswith(_SQLITE_SIDE_FILES):
            continue
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
        if head == _SQLITE_MAGIC:
            rows = sqlite_rows(path)
            snapshot[relative] = "sqlite " + hashlib.sha256(repr(rows).encode()).hexdigest()
            for table, content in rows.items():
                snapshot[f"{relative}#{table}"] = f"{len(content)} rows"
        else:
            snapshot[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snapshot


def snapshot_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    changes = [f"new {name}" for name in sorted(set(after) - set(before))]
    changes += [f"gone {name}" for name in sorted(set(before) - set(after))]
    changes += [
        f"changed {name}: {before[name]} → {after[name]}"
        for name in sorted(set(before) & set(after))
        if before[name] != after[name]
    ]
    return changes


# --- listening sockets ----------------------------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        address = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc prints an IPv6 address as four host-order 32-bit words
        address = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return address, int(port, 16)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process `pid` has in LISTEN state, read from /proc."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                found.append(_address(fields[1]))
    return sorted(found)


# --- pickles --------------------------------------------------------------------------------------


class _Trap:
    """Unpickling it calls `os.mkdir(marker)`: harmless, and visible afterwards."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def pickle_trap(marker: Path) -> bytes:
    """A plain pickle (what a `.pkl` holds) that makes the folder `marker` when loaded."""
    import pickle

    return pickle.dumps({"format": "arsl-trainer-checkpoint/1", "model": _Trap(marker)}, protocol=2)


def torch_trap(marker: Path) -> bytes:
    """A `torch.save` file (what a `.pt` checkpoint holds) that makes the folder `marker` when loaded."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"format": "arsl-trainer-checkpoint/1", "model": _Trap(marker)}, buffer)
    return buffer.getvalue()


def walk_files(roots: Iterable[Path], suffix: str = ".py") -> Iterator[Path]:
    for root in roots:
        yield from sorted(root.rglob(f"*{suffix}"))


# --- unpickling, statically -------------------------------------------------------------------------

# Modules whose whole purpose is (un)pickling: importing one in product code is already a finding.
PICKLE_MODULES = frozenset({"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"})
# Calls that run code from the file they read, whatever their arguments.
ALWAYS_UNSAFE = frozenset(
    {
        *(
            f"{module}.{name}"
            for module in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle")
            for name in ("load", "loads", "Unpickler")
        ),
        "joblib.load",
        "shelve.open",
        "marshal.load",
        "marshal.loads",
        "pandas.read_pickle",
        "torch.jit.load",
        "torch.package.PackageImporter",
        "yaml.unsafe_load",
        "yaml.full_load",
        "numpy.lib.format.read_array",
    }
)
_SAFE_YAML_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "yaml.SafeLoader", "yaml.CSafeLoader"})


def _dotted(node: ast.AST, aliases: Mapping[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str, filename: str) -> list[str]:
    """`file:line: what` for each import of a pickling module and each call that could unpickle: every
    `torch.load` must pass `weights_only=True` (a literal, and no `**kwargs`); `numpy.load` may not pass
    `allow_pickle` other than a literal False; `yaml.load` needs a safe loader. Import aliases are followed."""
    tree = ast.parse(source, filename=filename)
    aliases: dict[str, str] = {"np": "numpy", "pd": "pandas"}
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    problems.append(f"{filename}:{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if node.module.split(".")[0] in PICKLE_MODULES:
                problems.append(f"{filename}:{node.lineno}: imports from {node.module}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        where = f"{filename}:{node.lineno}: {name}"
        splat = any(keyword.arg is None for keyword in node.keywords)
        if name in ALWAYS_UNSAFE:
            problems.append(f"{where} can unpickle (or run code from) what it reads")
        elif name in ("torch.load", "torch.serialization.load"):
            if splat or not _is_true(_keyword(node, "weights_only")):
                problems.append(f"{where} without weights_only=True")
        elif name == "numpy.load":
            allow = _keyword(node, "allow_pickle")
            if splat or (allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False)):
                problems.append(f"{where} with allow_pickle")
        elif name == "yaml.load":
            loader = _keyword(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or _dotted(loader, aliases) not in _SAFE_YAML_LOADERS:
                problems.append(f"{where} without a safe loader")
    return problems
