"""Separate processes, as separate CI runs would be: no overlap, and crash then takeover."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shipsure.stacks.locks import open_backend

from .conftest import PREFIX

HOLDERS = 4
ROUNDS = 5

# Each round holds the lock, appends "start" and "end" around a short critical section.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    from shipsure.stacks.locks import hold, open_backend

    url, log = sys.argv[1], sys.argv[2]
    backend = open_backend(url)
    for _ in range({rounds}):
        with hold(backend, "stacks/shared", ttl=30, wait=60, poll=0.01):
            with open(log, "a") as out:
                out.write(f"start {{os.getpid()}}\\n")
            time.sleep(0.01)
            with open(log, "a") as out:
                out.write(f"end {{os.getpid()}}\\n")
    backend.close()
    """
).format(rounds=ROUNDS)

# Takes the lock, says so, then waits to be killed without ever releasing it.
CRASHER = textwrap.dedent(
    """
    import sys, time
    from shipsure.stacks.locks import hold, open_backend

    with hold(open_backend(sys.argv[1]), "stacks/crash", owner="crasher", ttl=float(sys.argv[2])):
        print("held", flush=True)
        time.sleep(600)
    """
)


def _lock_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "file":
        return f"file://{tmp_path}/locks"
    redis_url: str = request.getfixturevalue("redis_url")
    return f"{redis_url}?prefix={PREFIX}{tmp_path.name}/"


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_concurrent_holders_in_separate_processes_never_overlap(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, log = _lock_url(kind, tmp_path, request), tmp_path / "critical.log"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(log)]) for _ in range(HOLDERS)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0

    lines = log.read_text().splitlines()
    assert len(lines) == 2 * HOLDERS * ROUNDS
    for start, end in zip(lines[::2], lines[1::2], strict=True):
        # Every critical section ends before the next one starts, and by the same process.
        assert start.split()[0] == "start" and end.split()[0] == "end"
        assert start.split()[1] == end.split()[1]


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_crashed_holder_is_taken_over_after_its_ttl_and_not_before(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, ttl = _lock_url(kind, tmp_path, request), 1.5
    crasher = subprocess.Popen(
        [sys.executable, "-c", CRASHER, url, str(ttl)], stdout=subprocess.PIPE, text=True
    )
    backend = open_backend(url)
    try:
        assert crasher.stdout is not None and crasher.stdout.readline() == "held\n"
        crasher.kill()  # no release, no more heartbeats: a crashed CI runner
        crasher.wait(timeout=10)
        left_by_crasher = backend.get("stacks/crash")
        assert left_by_crasher is not None and left_by_crasher.owner == "crasher"

        attempts_refused = 0
        deadline = time.monotonic() + 30
        while (taken := backend.acquire("stacks/crash", "successor", 30)) is None:
            attempts_refused += 1
            assert time.monotonic() < deadline, "the crashed holder's lock was never freed"
            time.sleep(0.05)

        assert attempts_refused > 0  # refused while the crashed holder's TTL was running
        # Not before: the takeover happened only once the crasher's last expiry had passed.
        assert taken.acquired_at >= left_by_crasher.expires_at - 0.01
    finally:
        if crasher.poll() is None:
            crasher.kill()
            crasher.wait(timeout=10)
        if crasher.stdout is not None:
            crasher.stdout.close()
        backend.close()
