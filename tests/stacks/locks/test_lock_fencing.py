"""Fencing: a lock backend that loses its data must not let two holders run at once for
longer than a check interval.

Runner A holds a lock and applies; the server restarts empty (real Redis without
persistence, real etcd on a fresh data directory); runner B acquires. A notices through its
between-renewal check, long before its next renewal, and A's release never removes B's
lock: renew and release carry A's fencing token.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from shipsure.stacks.locks import open_backend
from shipsure.stacks.locks.holder import hold
from shipsure.stacks.locks.interface import LockBackend, LockLost

from .harness import Harness
from .servers import etcd_server, free_port, redis_server

TTL = 60.0  # renewals every 20 s: a check must notice well before the first one
CHECK = 0.2
WAIT_SECONDS = 60.0  # an upper bound for what takes a fraction of a second


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


class Restartable:
    """A real server that `restart()` stops and starts again empty at the same address."""

    def __init__(self, kind: str) -> None:
        if kind == "redis":
            port = free_port()
            self._start: Callable[[], contextlib.AbstractContextManager[str]] = lambda: (
                redis_server(port)
            )
        else:
            ports = (free_port(), free_port())
            self._start = lambda: etcd_server(ports)
        self._running = contextlib.ExitStack()
        self.url = self._running.enter_context(self._start()).replace("http://", "etcd://")

    def restart(self) -> None:
        self._running.close()
        self._running = contextlib.ExitStack()
        self._running.enter_context(self._start())

    def stop(self) -> None:
        self._running.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "etcd"])
def test_a_server_restarted_empty_is_noticed_before_the_next_renewal(kind: str) -> None:
    server = Restartable(kind)
    a_backend, b_backend = open_backend(server.url), open_backend(server.url)
    try:
        with hold(a_backend, "stacks/prod", "runner-a", TTL, check_interval=CHECK) as a:
            assert a.confirm()
            server.restart()
            b = b_backend.acquire("stacks/prod", "runner-b", TTL)
            assert b is not None  # the empty server hands the key to B
            wait_for("A to notice", lambda: a.lost)
            assert a.renewals == 0  # noticed by a check, not at a renewal
            assert a.checks >= 1
            assert "runner-b" in a.lost_reason or "gone" in a.lost_reason
        # Leaving the block released with A's token: B's lock is untouched.
        holder = b_backend.get("stacks/prod")
        assert holder is not None and holder.owner == "runner-b"
    finally:
        a_backend.close()
        b_backend.close()
        server.stop()


def test_renew_and_release_need_the_fencing_token(harness: Harness) -> None:
    backend: LockBackend = harness.open()
    key = harness.key()
    first = backend.acquire(key, "runner-a", TTL)
    assert first is not None and first.token
    assert backend.force_break(key)
    # The same owner acquires again (a restarted runner with a fixed owner name, or a lock
    # backend that lost the first record): a new acquisition, a new token.
    second = backend.acquire(key, "runner-a", TTL)
    assert second is not None and second.token != first.token
    with pytest.raises(LockLost):
        backend.renew(key, "runner-a", TTL, first.token)
    assert backend.release(key, "runner-a", first.token) is False
    current = backend.get(key)
    assert current is not None and current.token == second.token
    renewed = backend.renew(key, "runner-a", TTL, second.token)
    assert renewed.token == second.token
    assert backend.release(key, "runner-a", second.token) is True


def test_a_holder_checks_between_renewals_and_before_steps(harness: Harness) -> None:
    a_backend, b_backend = harness.open(), harness.open()
    key = harness.key()
    with hold(a_backend, key, "runner-a", TTL, check_interval=CHECK) as a:
        assert a.confirm()
        b_backend.force_break(key)  # as a server that lost its data would
        assert b_backend.acquire(key, "runner-b", TTL) is not None
        assert not a.confirm()  # before the next step
        assert a.lost and a.renewals == 0
    holder = b_backend.get(key)
    assert holder is not None and holder.owner == "runner-b"
