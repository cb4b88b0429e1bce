"""Object-store keys: '/'-separated, relative, never escaping their prefix."""

from __future__ import annotations

MAX_KEY_BYTES = 1024


class UnsafeKeyError(ValueError):
    """A key or relative path that could escape its prefix or confuse a store."""


def check_relative_path(path: str) -> str:
    """Return `path` if it is a safe '/'-separated relative path, else raise UnsafeKeyError."""
    if not path:
        raise UnsafeKeyError("empty path")
    if path.startswith("/"):
        raise UnsafeKeyError(f"absolute path {path!r}")
    if "\\" in path:
        raise UnsafeKeyError(f"backslash in {path!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise UnsafeKeyError(f"control character in {path!r}")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in path):
        raise UnsafeKeyError(f"name is not valid UTF-8: {path!r}")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeKeyError(f"path segment {segment!r} in {path!r}")
    if len(path.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnsafeKeyError(f"path longer than {MAX_KEY_BYTES} bytes: {path[:60]!r}…")
    return path


def join_key(prefix: str, relative: str) -> str:
    """Join a store prefix ('datasets/' or '') and a checked relative path."""
    check_relative_path(relative)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix + relative
