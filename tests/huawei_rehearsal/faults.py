"""Fault switches the stand-ins consult: a small registry set from a test, an admin HTTP route or a file.

A fault is armed by name, for a number of firings (`times`, None = until cleared) and with optional
parameters (`match`: fire only for requests whose detail contains this text; anything else a stand-in
reads). A stand-in asks `faults.take(name, detail=...)` at the point where the real service would fail;
it gets the `Fault` (and one firing is used up) or None.

The names the stand-ins know (`KNOWN`):

- `job_fails`: a training job's processes end, the job is reported Failed with a reason (training).
- `import_fails`: a model import ends in the documented failed state (serving).
- `service_stuck_deploying`: a service stays in `deploying` (serving).
- `throttle_429`: the gateway answers 429 (serving).
- `error_500_mid_canary`: a service call answers 500 (serving).
- `drop_connection_after_put`: a PUT is applied, then the connection closed without an answer (OBS, and
  ModelArts UpdateService: `match=UpdateService` limits it to the latter, `match=/events/0` to the release's
  records in OBS).

Where they can be set:

- In-process: `Faults.arm("job_fails", times=1)`, `Faults.clear()`.
- The file: when the registry has a `path`, its state lives in that JSON file (`{"job_fails": {"remaining":
  1, "params": {}}}`), read on every consult, so a person can edit it while the stack runs.
- The admin route (`FaultsAdmin`, on 127.0.0.1, its URL in the port file): `GET /faults` lists them,
  `PUT /faults/<name>` with a JSON body `{"times": 1, "params": {...}}` arms one, `DELETE /faults/<name>`
  (or `DELETE /faults`) clears.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KNOWN = frozenset(
    {
        "job_fails",
        "import_fails",
        "service_stuck_deploying",
        "throttle_429",
        "error_500_mid_canary",
        "drop_connection_after_put",
    }
)


@dataclass(frozen=True)
class Fault:
    """One armed fault: how many firings are left (None: until cleared) and its parameters."""

    name: str
    remaining: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)


class UnknownFault(ValueError):
    pass


class Faults:
    """The registry; thread-safe, and process-safe for readers when backed by a file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, Any]] = {}
        self.fired: list[tuple[str, str]] = []
        """(name, detail) of every firing, in order: what a test or the rehearsal log reads."""

    # --- state, in memory or in the file -----------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return self._memory
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except FileNotFoundError:
            return {}
        except ValueError:
            # A half-edited file arms nothing rather than failing every request.
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _store(self, state: dict[str, dict[str, Any]]) -> None:
        if self.path is None:
            self._memory = state
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".faults.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(state, stream, indent=2, sort_keys=True)
        os.replace(temporary, self.path)

    # --- the API -----------------------------------------------------------------------------------

    def arm(self, name: str, *, times: int | None = None, **params: str) -> None:
        if name not in KNOWN:
            raise UnknownFault(f"unknown fault {name!r}; known: {', '.join(sorted(KNOWN))}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None: until cleared)")
        with self._lock:
            state = dict(self._load())
            state[name] = {"remaining": times, "params": {key: str(value) for key, value in params.items()}}
            self._store(state)

    def clear(self, name: str | None = None) -> None:
        with self._lock:
            state = {} if name is None else {key: value for key, value in self._load().items() if key != name}
            self._store(state)

    def peek(self, name: str) -> Fault | None:
        with self._lock:
            record = self._load().get(name)
        return None if record is None else Fault(name, record.get("remaining"), dict(record.get("params") or {}))

    def take(self, name: str, *, detail: str = "") -> Fault | None:
        """The fault if armed (and its `match` parameter, if any, is in `detail`); uses up one firing."""
        with self._lock:
            state = dict(self._load())
            record = state.get(name)
            if record is None:
                return None
            params = dict(record.get("params") or {})
            if params.get("match") and params["match"] not in detail:
                return None
            remaining = record.get("remaining")
            if remaining is not None:
                if remaining <= 1:
                    del state[name]
                else:
                    state[name] = {**record, "remaining": remaining - 1}
                self._store(state)
            self.fired.append((name, detail))
            return Fault(name, remaining, params)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(self._load()))


class _AdminServer(ThreadingHTTPServer):
    daemon_threads = True
    faults: Faults


class _AdminHandler(BaseHTTPRequestHandler):
    server: _AdminServer

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _name(self) -> str | None:
        parts = [part for part in self.path.split("?", 1)[0].split("/") if part]
        if not parts or parts[0] != "faults" or len(parts) > 2:
            return ""
        return parts[1] if len(parts) == 2 else None

    def do_GET(self) -> None:
        if self._name() is None:
            self._reply(200, {"faults": self.server.faults.snapshot(), "known": sorted(KNOWN)})
        else:
            self._reply(404, {"error": "GET /faults"})

    def do_PUT(self) -> None:
        name = self._name()
        if not name:
            self._reply(404, {"error": "PUT /faults/<name>"})
            return
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"{}")
            times = body.get("times")
            self.server.faults.arm(name, times=None if times is None else int(times), **dict(body.get("params") or {}))
        except (ValueError, TypeError, AttributeError) as error:
            self._reply(400, {"error": str(error)})
            return
        self._reply(200, {"faults": self.server.faults.snapshot()})

    def do_DELETE(self) -> None:
        name = self._name()
        if name == "":
            self._reply(404, {"error": "DELETE /faults[/<name>]"})
            return
        self.server.faults.clear(name)
        self._reply(200, {"faults": self.server.faults.snapshot()})

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the registry's `fired` list is the record."""


class FaultsAdmin:
    """The admin route on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, faults: Faults) -> None:
        self._server = _AdminServer(("127.0.0.1", 0), _AdminHandler)
        self._server.faults = faults
        self._thread = threading.Thread(target=self._server.serve_forever, name="faults-admin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/faults"

    def start(self) -> FaultsAdmin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


__all__ = ["KNOWN", "Fault", "Faults", "FaultsAdmin", "UnknownFault"]
