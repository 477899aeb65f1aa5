"""hold(): acquire, heartbeat, release, and the lost-lock flag, on a real backend."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipsure.errors import ShipsureError
from shipsure.findings import ExitCode
from shipsure.stacks.locks import LockError, LockHeld, LockLost, default_owner, hold
from shipsure.stacks.locks.file import FileLockBackend
from shipsure.stacks.locks.interface import LockBackend, LockInfo

SHORT_TTL = 0.6


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[FileLockBackend]:
    locks = FileLockBackend(tmp_path / "locks")  # the real clock: heartbeats take real time
    yield locks
    locks.close()


def test_heartbeat_keeps_a_short_lock_alive_past_its_ttl(backend: FileLockBackend) -> None:
    with hold(backend, "stacks/network", owner="runner-a", ttl=SHORT_TTL) as held:
        # Several TTLs pass; without renewals anyone could take the lock over.
        for _ in range(4):
            threading_wait(SHORT_TTL / 2)
            assert backend.acquire("stacks/network", "runner-b", SHORT_TTL) is None
        assert held.renewals >= 3
        assert not held.lost
        current = backend.get("stacks/network")
        assert current is not None and current.owner == "runner-a"
    assert backend.get("stacks/network") is None


def test_released_when_the_block_raises(backend: FileLockBackend) -> None:
    with pytest.raises(RuntimeError), hold(backend, "stacks/dns", owner="runner-a"):
        raise RuntimeError("apply failed")
    assert backend.get("stacks/dns") is None


def test_released_on_keyboard_interrupt(backend: FileLockBackend) -> None:
    with pytest.raises(KeyboardInterrupt), hold(backend, "stacks/dns"):
        raise KeyboardInterrupt
    assert backend.get("stacks/dns") is None


def test_a_live_lock_of_someone_else_raises_lock_held(backend: FileLockBackend) -> None:
    assert backend.acquire("stacks/dns", "ci-7:123:abc", 600, note="pipeline 9") is not None

    with pytest.raises(LockHeld) as caught, hold(backend, "stacks/dns", owner="runner-b"):
        pytest.fail("must not enter the block")

    assert isinstance(caught.value, ShipsureError)
    assert caught.value.exit_code == ExitCode.COULD_NOT_RUN
    assert caught.value.info.owner == "ci-7:123:abc"
    message = str(caught.value)
    assert "stacks/dns" in message and "ci-7:123:abc" in message and "pipeline 9" in message
    assert "\n" not in message


def test_waits_for_a_lock_that_frees_up(backend: FileLockBackend) -> None:
    assert backend.acquire("stacks/dns", "runner-a", SHORT_TTL) is not None

    # runner-a never renews: its lock goes stale and the waiter takes it over.
    with hold(backend, "stacks/dns", owner="runner-b", wait=10, poll=0.1) as held:
        assert held.owner == "runner-b"


def test_lost_lock_sets_the_flag(backend: FileLockBackend) -> None:
    with hold(backend, "stacks/dns", owner="runner-a", ttl=SHORT_TTL) as held:
        backend.force_break("stacks/dns")
        assert held.lost_event.wait(10)
        assert held.lost
        assert "runner-a" in held.lost_reason
        with pytest.raises(LockLost):
            held.check()
    assert backend.get("stacks/dns") is None


class FlakyRenewals:
    """A real backend whose next `failures` renewals fail as an unreachable server would."""

    def __init__(self, inner: LockBackend, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        return self.inner.acquire(key, owner, ttl, note)

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        if self.failures > 0:
            self.failures -= 1
            raise LockError("lock server unreachable")
        return self.inner.renew(key, owner, ttl, token)

    def release(self, key: str, owner: str, token: str = "") -> bool:
        return self.inner.release(key, owner, token)

    def get(self, key: str) -> LockInfo | None:
        return self.inner.get(key)

    def list(self) -> list[LockInfo]:
        return self.inner.list()

    def force_break(self, key: str) -> bool:
        return self.inner.force_break(key)

    def close(self) -> None:
        self.inner.close()


def test_transient_renew_failures_are_retried(backend: FileLockBackend) -> None:
    flaky = FlakyRenewals(backend, failures=2)
    with hold(flaky, "stacks/dns", owner="runner-a", ttl=1.5) as held:
        threading_wait(1.8)  # past the first TTL: only a retried renewal keeps it ours
        assert flaky.failures == 0
        assert not held.lost
        assert held.renewals >= 1
    assert backend.get("stacks/dns") is None


def test_renewals_failing_until_expiry_mark_the_lock_lost(backend: FileLockBackend) -> None:
    flaky = FlakyRenewals(backend, failures=1_000_000)
    with hold(flaky, "stacks/dns", owner="runner-a", ttl=SHORT_TTL) as held:
        assert held.lost_event.wait(10)
        assert "expired" in held.lost_reason


def test_default_owner_names_host_and_process() -> None:
    host, pid, token = default_owner().rsplit(":", 2)
    assert host == socket.gethostname()
    assert pid == str(os.getpid())
    assert len(token) == 12 and default_owner() != default_owner()


def threading_wait(seconds: float) -> None:
    threading.Event().wait(seconds)
