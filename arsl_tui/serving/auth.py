"""App codes for the `X-Apig-AppCode` header (APIG simple authentication), stored hashed.

A key is 32 random bytes, shown to its creator once as 43 URL-safe base64 characters prefixed
`arsl_`. Only its SHA-256 is stored (table `gateway_keys` in the local state file), so a copy of the
state file lets nobody call the gateway. The gateway compares the presented key's hash with every
active hash using `hmac.compare_digest`, visiting all of them whatever matches, so the time taken does
not depend on where or whether a match is found.

The gateway sees keys created or revoked by another process (`arsl gateway keys …`) on its next
request: it re-reads the table whenever SQLite's `data_version` says another connection committed.

This module imports only the standard library and the state helper: the CLI uses it without torch.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from arsl_tui.state.db import BUSY_TIMEOUT_MS, Migrations, StateDB

HEADER = "X-Apig-AppCode"
KEY_PREFIX = "arsl_"
KEY_BYTES = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

MIGRATIONS = Migrations(
    "gateway_keys",
    steps=(
        """
    CREATE TABLE gateway_keys (
        name TEXT PRIMARY KEY,
        key_sha256 TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """,
    ),
)


class GatewayKeyError(Exception):
    """A key operation that cannot be done (bad or duplicate name, unknown key); the message says why."""


@dataclass(frozen=True)
class KeyInfo:
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "created_at": _utc(self.created_at),
            "revoked_at": _utc(self.revoked_at) if self.revoked_at is not None else None,
            "active": self.active,
        }


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode("ascii")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise GatewayKeyError(
            f"key name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


class KeyStore:
    """Create, revoke and list keys in the state file."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        db.ensure_schema(MIGRATIONS)

    def create(self, name: str) -> str:
        """A new key for `name`, returned once; refused while an active key has that name."""
        check_name(name)
        key = new_key()
        with self.db.transaction() as connection:
            row = connection.execute("SELECT revoked_at FROM gateway_keys WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise GatewayKeyError(
                    f"a key named {name!r} exists; revoke it first (`arsl gateway keys revoke {name}`)"
                )
            connection.execute(
                "INSERT INTO gateway_keys (name, key_sha256, created_at, revoked_at) VALUES (?, ?, ?, NULL) "
                "ON CONFLICT(name) DO UPDATE SET key_sha256 = excluded.key_sha256, "
                "created_at = excluded.created_at, revoked_at = NULL",
                (name, hash_key(key), time.time()),
            )
        return key

    def revoke(self, name: str) -> KeyInfo:
        """Revoke the active key `name`; GatewayKeyError if there is none."""
        with self.db.transaction() as connection:
            row = connection.execute(
                "SELECT created_at, revoked_at FROM gateway_keys WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise GatewayKeyError(f"no key named {name!r} (`arsl gateway keys list` shows them)")
            if row[1] is not None:
                raise GatewayKeyError(f"the key {name!r} was revoked already, at {_utc(row[1])}")
            now = time.time()
            connection.execute("UPDATE gateway_keys SET revoked_at = ? WHERE name = ?", (now, name))
        return KeyInfo(name=name, created_at=float(row[0]), revoked_at=now)

    def delete(self, name: str) -> None:
        """Forget `name` altogether (for throw-away keys such as the one `arsl api-test` makes)."""
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM gateway_keys WHERE name = ?", (name,))

    def list(self) -> list[KeyInfo]:
        rows = (
            self.db.connection()
            .execute("SELECT name, created_at, revoked_at FROM gateway_keys ORDER BY name")
            .fetchall()
        )
        return [
            KeyInfo(name=str(name), created_at=float(created), revoked_at=None if revoked is None else float(revoked))
            for name, created, revoked in rows
        ]

    def active_hashes(self) -> builtins.list[tuple[str, str]]:
        """(sha256 hex, name) of every active key."""
        rows = (
            self.db.connection()
            .execute("SELECT key_sha256, name FROM gateway_keys WHERE revoked_at IS NULL")
            .fetchall()
        )
        return [(str(digest), str(name)) for digest, name in rows]


class KeyVerifier:
    """The gateway's view of the active keys, refreshed when another connection changed the state file.

    It reads through a connection of its own: SQLite's `data_version` is per connection and changes
    when any *other* connection commits, so every writer (another process, another thread) counts.
    Used by one thread at a time (the event loop).
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._connection = sqlite3.connect(
            store.db.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._hashes: list[tuple[bytes, str]] = []
        self._data_version: int | None = None
        self.refresh()

    def _current_data_version(self) -> int:
        row = self._connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def refresh(self) -> None:
        self._data_version = self._current_data_version()
        rows = self._connection.execute("SELECT key_sha256, name FROM gateway_keys WHERE revoked_at IS NULL")
        self._hashes = [(bytes.fromhex(str(digest)), str(name)) for digest, name in rows.fetchall()]

    def close(self) -> None:
        self._connection.close()

    def refresh_if_changed(self) -> None:
        if self._current_data_version() != self._data_version:
            self.refresh()

    def verify(self, presented: str | None) -> str | None:
        """The name of the key `presented` is, or None; visits every active key (constant time in the match)."""
        self.refresh_if_changed()
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: str | None = None
        for stored, name in self._hashes:
            if hmac.compare_digest(stored, digest) and found is None:
                found = name
        return found


__all__ = [
    "HEADER",
    "MIGRATIONS",
    "GatewayKeyError",
    "KeyInfo",
    "KeyStore",
    "KeyVerifier",
    "check_name",
    "hash_key",
    "new_key",
]
