"""Lock records that parse as JSON but are no record shipsure wrote: refused as unreadable
(break them by hand), never read as a live lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipsure.stacks.locks.file import FileLockBackend
from shipsure.stacks.locks.interface import LockUnreadable
from shipsure.stacks.locks.record import NotALockRecord, decode_record


@pytest.mark.parametrize(
    "expires_at",
    ["NaN", "Infinity", "-Infinity", '"2026-01-01"', "true", "null"],
)
def test_times_that_are_not_finite_numbers_are_no_record(tmp_path: Path, expires_at: str) -> None:
    raw = (
        '{"key": "stacks/a", "owner": "x", "acquired_at": 0, '
        f'"expires_at": {expires_at}, "token": "t"}}'
    )
    with pytest.raises(NotALockRecord):
        decode_record(raw, key=None)
    # NaN compared with any time is false: read as a lock it would never go stale.
    backend = FileLockBackend(tmp_path)
    (tmp_path / "stacks%2Fa.lock.json").write_text(raw)
    with pytest.raises(LockUnreadable, match=r"locks break stacks/a --apply"):
        backend.acquire("stacks/a", "runner-b", 30.0)


def test_a_record_shipsure_wrote_still_reads(tmp_path: Path) -> None:
    backend = FileLockBackend(tmp_path)
    info = backend.acquire("live/prod app", "runner-a", 30.0)
    assert info is not None
    assert backend.get("live/prod app") == info
    fields = json.loads((tmp_path / "live%2Fprod%20app.lock.json").read_text())
    assert decode_record(json.dumps(fields), key=None) == info
    (tmp_path / "live%2Fprod%20app.lock.json").write_text("{garbage")
    with pytest.raises(LockUnreadable, match=r"locks break 'live/prod app' --apply"):
        backend.get("live/prod app")


def test_a_lock_file_that_is_a_fifo_or_a_device_is_unreadable_not_waited_on(
    tmp_path: Path,
) -> None:
    # A FIFO hung every runner taking that stack's lock; a link to /dev/zero filled memory.
    backend = FileLockBackend(tmp_path)
    os.mkfifo(tmp_path / "stacks%2Fa.lock.json")
    (tmp_path / "stacks%2Fb.lock.json").symlink_to("/dev/zero")
    (tmp_path / "stacks%2Fc.lock.json").write_bytes(b" " * 100_000 + b"{}")
    for key in ("stacks/a", "stacks/b", "stacks/c"):
        with pytest.raises(LockUnreadable, match=f"locks break {key} --apply"):
            backend.acquire(key, "runner-a", 30.0)
    listed = backend.list()
    assert [(e.key, type(e).__name__) for e in listed] == [
        ("stacks/a", "LockUnreadable"),
        ("stacks/b", "LockUnreadable"),
        ("stacks/c", "LockUnreadable"),
    ]
    # Breaking removes the entry in the lock folder, never what a link points at.
    assert backend.break_unreadable("stacks/b")
    assert not (tmp_path / "stacks%2Fb.lock.json").exists()
    assert Path("/dev/zero").exists()
