"""Files mode's sending processes (`ops.upload_senders`): real child processes, each with its own store.

The children here open the local store (a folder) from the settings, as they open OBS on the Huawei
backend (`tests/providers/test_upload_faults.py` sends through the real SDK in them, against a faulty sink).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from arsl_tui.config import Settings
from arsl_tui.domain.events import Event, UploadProgressed
from arsl_tui.domain.ports import ObjectStore
from arsl_tui.ops.upload import UploadRequest, run_upload
from arsl_tui.ops.upload_senders import SENDER_MODULE, SendingProcesses, sending_process_count
from arsl_tui.ops.upload_sources import UploadItem
from arsl_tui.ops.upload_transfer import Failure, Stop, Transfer
from tests.fixtures.upload_checks import assert_store_matches
from tests.unit.test_upload_engine import local_store, make_settings, validated

ROOT = Path(__file__).resolve().parents[2]


def sender_children() -> set[int]:
    """The sending processes this process started and that still run, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # it ended while we looked
        if parent == os.getpid() and SENDER_MODULE.encode() in command:
            found.add(int(entry.name))
    return found


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Whether process `pid` (not necessarily our child) exits within `timeout_s`: a pidfd turns readable."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(descriptor)


@pytest.mark.parametrize(
    ("backend", "configured", "objects", "from_settings", "expected"),
    [
        ("huawei", 0, 108_099, True, "cpus"),
        ("huawei", 0, 999, True, 1),  # a child's start would cost more than it saves
        ("local", 0, 108_099, True, 1),  # a file copy: no SDK's CPU to spread
        ("local", 3, 10, True, 3),  # said in the settings: as said
        ("huawei", 3, 108_099, False, 1),  # a store handed in cannot be rebuilt in a child
    ],
)
def test_how_many_sending_processes_an_upload_gets(
    tmp_path: Path, backend: str, configured: int, objects: int, from_settings: bool, expected: int | str
) -> None:
    settings = make_settings(tmp_path, backend=backend, **{"upload.sender_processes": configured})
    if expected == "cpus":
        expected = max(1, min(len(os.sched_getaffinity(0)), 4))
    assert sending_process_count(settings, objects, store_from_settings=from_settings) == expected


def items_on_disk(folder: Path, count: int) -> list[UploadItem]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        data = f"object {index}\n".encode() * (index + 1)
        path = folder / f"{index}.bin"
        path.write_bytes(data)
        items.append(UploadItem(f"k/{index}", hashlib.md5(data).hexdigest(), len(data), 1, source=str(path)))
    return items


class Retries:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str, float]] = []

    def __call__(self, key: str, attempt: int, error: str, delay_s: float) -> None:
        self.seen.append((key, attempt, error, delay_s))


def senders_over(settings: Settings, store: ObjectStore, processes: int, threads: int) -> SendingProcesses:
    in_process = Transfer(store, settings.upload, threading.Event(), Retries())
    return SendingProcesses(settings, in_process, processes=processes, threads=threads, on_retry=Retries())


def test_children_run_whole_transfers_with_the_engines_policy(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = local_store(settings)
    items = items_on_disk(tmp_path / "files", 6)
    with senders_over(settings, store, processes=2, threads=2) as senders:
        children = senders.processes
        assert len({child.pid for child in children}) == 2 and os.getpid() not in {child.pid for child in children}
        assert [senders.submit(item, False).result() for item in items] == [True] * len(items)
        assert [store.get_bytes(item.key) for item in items] == [Path(item.source or "").read_bytes() for item in items]
        # Headed first and found: not sent again.
        assert [senders.submit(item, True).result() for item in items] == [False] * len(items)
        # A file that changed since it was validated: the same failure, in the same words, as in this process.
        changed = dataclasses.replace(items[0], key="k/changed", md5="0" * 32)
        here = Transfer(store, settings.upload, threading.Event(), Retries())
        with pytest.raises(Failure) as in_this_process:
            here(changed, False)
        with pytest.raises(Failure) as in_a_child:
            senders.submit(changed, False).result()
        assert str(in_a_child.value) == str(in_this_process.value) and "changed since it was validated" in str(
            in_a_child.value
        )
        # Halted, every transfer stops at once; resumed, they run again.
        senders.halt()
        with pytest.raises(Stop):
            senders.submit(items[1], True).result()
        senders.resume()
        assert senders.submit(items[1], True).result() is False
    # Closed: every child answered what it had and exited on its own, not killed after the grace.
    assert [child.returncode for child in children] == [0, 0]
    assert not sender_children()


def test_the_items_of_a_child_that_dies_go_again_to_another_and_then_to_this_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = local_store(settings)
    items = items_on_disk(tmp_path / "files", 12)
    with senders_over(settings, store, processes=2, threads=1) as senders:
        first, second = (child.pid for child in senders.processes)
        os.kill(first, signal.SIGKILL)
        assert wait_for_exit(first, 10)
        # Whether an item meets the dead child before its end is noticed or after, it is sent.
        assert all(isinstance(senders.submit(item, False).result(), bool) for item in items[:6])
        os.kill(second, signal.SIGKILL)
        assert wait_for_exit(second, 10)
        assert all(isinstance(senders.submit(item, False).result(), bool) for item in items[6:])
        assert not sender_children() - {first, second}
    assert [store.get_bytes(item.key) for item in items] == [Path(item.source or "").read_bytes() for item in items]


def test_children_exit_when_the_process_that_started_them_is_killed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from arsl_tui.config import load_settings\n"
        "from arsl_tui.backends import backend_for\n"
        "from arsl_tui.ops.upload_senders import SendingProcesses\n"
        "from arsl_tui.ops.upload_transfer import Transfer\n"
        f"home = {str(settings.home)!r}\n"
        f"settings = load_settings(environ={{}}, cwd=Path(home), cli_overrides={{'home': home}})\n"
        "here = Transfer(backend_for(settings).object_store(), settings.upload, threading.Event(), print)\n"
        "senders = SendingProcesses(settings, here, processes=2, threads=1, on_retry=print)\n"
        "print(*(child.pid for child in senders.processes), flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(children) == 2
        parent.kill()
        parent.wait()
        assert all(wait_for_exit(pid, 30) for pid in children), "a sending process outlived its engine"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


class ChildWatch:
    """At the first progress event, which sending processes run; optionally kill one of them mid-upload."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.kill_at = kill_at
        self.seen: set[int] = set()
        self.killed: int | None = None
        self.progress = 0
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if not isinstance(event, UploadProgressed):
                return
            self.progress += 1
            if self.progress == 1:
                self.seen = sender_children()
            if self.kill_at is not None and self.progress == self.kill_at and self.killed is None:
                self.killed = min(self.seen)
                os.kill(self.killed, signal.SIGKILL)


def sending_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, **{"upload.sender_processes": 2, "upload.concurrency": 4})


def test_files_mode_sends_from_two_processes_and_the_store_holds_exactly_the_data_set(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    settings = sending_settings(tmp_path)
    watch = ChildWatch()
    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode="files"), on_event=watch)
    assert outcome.status == "done", outcome.error
    assert len(watch.seen) == 2
    assert outcome.objects_sent == len(validated(settings, tiny_dataset).images) + 1  # and the staged manifest
    assert_store_matches(local_store(settings), settings, validated(settings, tiny_dataset), "files")
    assert not sender_children()


def test_a_sending_process_killed_mid_upload_costs_retries_not_objects(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = sending_settings(tmp_path)
    watch = ChildWatch(kill_at=10)
    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode="files"), on_event=watch)
    assert watch.killed is not None
    assert outcome.status == "done", outcome.error
    assert_store_matches(local_store(settings), settings, validated(settings, tiny_dataset), "files")
    assert not sender_children()
