"""What the lock contract tests need to know about a backend under test."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from shipsure.stacks.locks.interface import LockBackend


class FakeClock:
    """A clock the test steps by hand, for backends whose client compares times."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Harness:
    """Opens backends on one namespace; each `open()` is a separate client (connection).

    `clock` is set for backends whose client compares times: tests step it. Otherwise the
    server owns the TTL and tests use `short_ttl` and wait for the server to expire it.
    """

    name: str
    factory: Callable[[], LockBackend]
    clock: FakeClock | None
    short_ttl: float
    opened: list[LockBackend] = field(default_factory=list)

    @property
    def server_ttl(self) -> bool:
        return self.clock is None

    def open(self) -> LockBackend:
        backend = self.factory()
        self.opened.append(backend)
        return backend

    def close_all(self) -> None:
        for backend in self.opened:
            backend.close()
        self.opened.clear()

    def key(self) -> str:
        return f"stacks/{self.name}-{uuid.uuid4().hex[:10]}"

    def let_expire(self, backend: LockBackend, key: str, ttl: float) -> None:
        """Move past a lock's TTL: step the fake clock, or wait for the server to drop it."""
        if self.clock is not None:
            self.clock.advance(ttl + 0.001)
            return
        time.sleep(ttl)
        # Servers reap expired leases on their own schedule (etcd checks every 500 ms).
        deadline = time.monotonic() + 5.0
        while backend.get(key) is not None:
            assert time.monotonic() < deadline, f"{self.name} kept {key} past its TTL"
            time.sleep(0.05)
