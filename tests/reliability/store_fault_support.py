"""Helpers for `test_store_faults.py`: the seeded fault mix, what a store and a journal really hold, and a
driver that runs inside a private mount namespace on a tiny tmpfs, so a disk really fills up.

The full-disk driver is a program, because a tmpfs mounted in a namespace is gone once the namespace's
last process exits: `unshare -rm python -m tests.reliability.store_fault_support upload|register ...`
mounts the tmpfs, fills it with a filler file to the free space asked for, runs the operation, copies
what the disk then holds out to `--out` (the store, the journal), deletes the filler and runs it again,
copies again, and writes `--out/report.json`. The test reads the copies and the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.fixtures.s3sink import Faults

ROOT = Path(__file__).resolve().parents[2]
RESERVED = ".arsl-store"
PAGE = 4096
BUCKET = "arsl-ml"
"""The default `storage.bucket`: the local store of `$ARSL_HOME` is `$ARSL_HOME/store/arsl-ml`."""


def mixed_faults(seed: int, *, stall: float = 0.0, reads: bool = False) -> Faults:
    """Every fault at once, with shares drawn from `seed`: latency, resets before and after storing,
    500/503, 429 with Retry-After, truncated stores and (`reads`) bodies cut short on the way back."""
    draw = random.Random(seed)
    return Faults(
        fail_503=draw.uniform(0.02, 0.05),
        fail_500=draw.uniform(0.02, 0.05),
        throttle_429=draw.uniform(0.02, 0.05),
        retry_after="1",
        drop=draw.uniform(0.02, 0.04),
        drop_after_store=draw.uniform(0.01, 0.03),
        truncate_store=draw.uniform(0.02, 0.05),
        cut_get=draw.uniform(0.02, 0.05) if reads else 0.0,
        short_get=draw.uniform(0.02, 0.05) if reads else 0.0,
        stall=stall,
        stall_s=1.0,
        latency_s=0.004,
        seed=seed,
    )


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- what a local store folder and a journal hold -------------------------------------------------------


def store_files(root: Path) -> dict[str, tuple[int, str]]:
    """key → (size, MD5 of the bytes on disk) of every object file, the reserved folder left out."""
    found: dict[str, tuple[int, str]] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] == RESERVED or not path.is_file():
            continue
        found[relative.as_posix()] = (path.stat().st_size, file_md5(path))
    return found


def reserved_problems(root: Path) -> list[str]:
    """What the store's own folder must never hold after a writer ended: temporaries, and sidecars that
    describe no object or claim another MD5 or size than the object's bytes."""
    problems = [f"temporary left: {path.name}" for path in sorted((root / RESERVED / "tmp").glob("*"))]
    meta_root = root / RESERVED / "meta"
    for sidecar in sorted(meta_root.rglob("*.json")):
        key = sidecar.relative_to(meta_root).as_posix().removesuffix(".json")
        target = root / key
        try:
            meta = json.loads(sidecar.read_bytes())
        except ValueError:
            problems.append(f"sidecar of {key} is not JSON")
            continue
        if not target.is_file():
            problems.append(f"sidecar of {key}, which does not exist")
        elif (meta.get("size"), meta.get("md5")) != (target.stat().st_size, file_md5(target)):
            problems.append(f"sidecar of {key} claims {meta.get('size')} bytes, MD5 {meta.get('md5')}")
    return problems


def journal_rows(db_path: Path) -> dict[str, tuple[str, int, str]]:
    """key → (md5, size, state) of every object of every upload job in a state database."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT key, md5, size, state FROM upload_objects").fetchall()
    finally:
        connection.close()
    return {str(key): (str(md5), int(size), str(state)) for key, md5, size, state in rows}


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file in WAL mode (the backup API, not a file copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as reader, sqlite3.connect(target) as writer:
        reader.backup(writer)


# --- the namespace -------------------------------------------------------------------------------------


def namespace_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted in a private user+mount namespace here, or None when it can."""
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    with tempfile.TemporaryDirectory(prefix="arsl-ns-probe-") as folder:
        try:
            probe = subprocess.run(
                ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{folder}' && touch '{folder}/x'"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unshare -rm failed to run ({error})"
        if probe.returncode != 0:
            return f"unshare -rm + mount -t tmpfs is not permitted here: {probe.stderr.strip()[:200]}"
    return None


def in_namespace(command: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run this module's driver with `command` in a fresh user+mount namespace."""
    return subprocess.run(
        ["unshare", "-rm", sys.executable, "-m", "tests.reliability.store_fault_support", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=_clean_env(),
    )


def _clean_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env["COLUMNS"] = "400"  # one line per message from Rich, however long
    env["PYTHONPATH"] = str(ROOT)
    return env


def _mount_tmpfs(folder: Path, size_bytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)], check=True)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about `leave_bytes` (whole pages) free on `folder`'s file system."""
    filler = folder / "filler.bin"
    status = os.statvfs(folder)
    free = status.f_bavail * status.f_frsize
    size = max(free - leave_bytes, 0)
    with filler.open("wb") as handle:
        block = b"\0" * (1 << 20)
        while size > 0:
            handle.write(block[: min(size, len(block))])
            size -= len(block)
    return filler


def _free_bytes(folder: Path) -> int:
    status = os.statvfs(folder)
    return status.f_bavail * status.f_frsize


def _run_cli(home: Path, cwd: Path, settings: list[str], *args: str) -> dict[str, Any]:
    """`arsl ARGS` with `$ARSL_HOME` and the `ARSL_<SECTION>_<KEY>=value` settings given."""
    env = _clean_env()
    env["ARSL_HOME"] = str(home)
    env.update(item.split("=", 1) for item in settings)
    done = subprocess.run(
        [sys.executable, "-m", "arsl_tui", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _snapshot(home: Path, store_mount: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    store = store_mount / BUCKET
    if store.exists():
        shutil.copytree(store, out / "store", symlinks=True)
    database = home / "arsl.db"
    if database.exists():
        copy_database(database, out / "arsl.db")


def drive_upload(args: argparse.Namespace) -> dict[str, Any]:
    """`arsl upload` with a full disk under the store (`--full store`) or under all of `$ARSL_HOME`
    (`--full home`: the journal, the staging folder and the store), then again after the filler is gone."""
    home, out = Path(args.home), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_mount = home / "store"
    disk = store_mount if args.full == "store" else home
    _mount_tmpfs(disk, args.disk_bytes)
    filler = _fill(disk, args.free_bytes)
    report: dict[str, Any] = {"free_before": _free_bytes(disk)}
    command = ("upload", args.dataset, "--yes", "--mode", args.mode)
    report["first"] = _run_cli(home, out, args.env, *command)
    _snapshot(home, store_mount, out / "after-first")
    filler.unlink()
    report["second"] = _run_cli(home, out, args.env, *command)
    _snapshot(home, store_mount, out / "after-second")
    return report


def drive_register(args: argparse.Namespace) -> dict[str, Any]:
    """For each free space asked for: register a package into a store on a disk that full, copy out what
    it left, free the space, register again, copy out again."""
    from arsl_tui.domain.ports import StoreError
    from arsl_tui.domain.registry import RegistryError
    from arsl_tui.ops.registry import ModelRegistry
    from arsl_tui.providers.local.store import LocalObjectStore

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    disk = Path(args.home) / "disk"
    _mount_tmpfs(disk, args.disk_bytes)
    trials: list[dict[str, Any]] = []
    gate = {"verdict": "pass", "rules": []}

    def register(store_root: Path) -> dict[str, Any]:
        registry = ModelRegistry(LocalObjectStore(store_root), "models/")
        try:
            record = registry.register(
                Path(args.package),
                job_id="job-full",
                manifest_id="m-full",
                source=args.package,
                gate=gate,
                metrics={"test_acc": 0.97},
                user="ann",
            )
        except (StoreError, RegistryError, OSError) as error:
            return {"error": str(error), "kind": type(error).__name__, "code": getattr(error, "code", None)}
        return {"version": record.version}

    for number, free_pages in enumerate(args.free_pages):
        store_root = disk / f"store-{number}"
        store_root.mkdir()
        filler = _fill(disk, free_pages * PAGE)
        trial: dict[str, Any] = {"free_pages": free_pages, "free_before": _free_bytes(disk)}
        trial["first"] = register(store_root)
        shutil.copytree(store_root, out / f"trial-{number}" / "after-first", symlinks=True)
        filler.unlink()
        trial["second"] = register(store_root)
        shutil.copytree(store_root, out / f"trial-{number}" / "after-second", symlinks=True)
        shutil.rmtree(store_root)
        trials.append(trial)
    return {"trials": trials}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.store_fault_support",
        description="full-disk drivers; run inside `unshare -rm`",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload")
    upload.add_argument("--dataset", required=True)
    upload.add_argument("--mode", choices=("shards", "files"), required=True)
    upload.add_argument("--full", choices=("store", "home"), default="store", help="which folder is the tiny disk")
    upload.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="ARSL_SECTION_KEY=VALUE",
        help="a setting for the arsl runs (repeatable)",
    )
    register = commands.add_parser("register")
    register.add_argument("--package", required=True)
    register.add_argument("--free-pages", type=int, nargs="+", required=True)
    for command in (upload, register):
        command.add_argument("--home", required=True)
        command.add_argument("--out", required=True)
        command.add_argument("--disk-bytes", type=int, required=True)
    upload.add_argument("--free-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    report = drive_upload(args) if args.command == "upload" else drive_register(args)
    Path(args.out, "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
