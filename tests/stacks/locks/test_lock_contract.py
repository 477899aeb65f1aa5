"""The one contract every lock backend keeps, run against each of them.

Each test uses its own key; servers are shared for the session. Each `harness.open()` is
a separate client, as two CI runners would be.
"""

from __future__ import annotations

import threading

import pytest

from shipsure.stacks.locks.interface import LockBackend, LockInfo, LockLost

from .harness import Harness

LONG_TTL = 60.0
CONTENDERS = 8


def test_acquire_then_release(harness: Harness) -> None:
    a, b = harness.open(), harness.open()
    key = harness.key()

    info = a.acquire(key, "runner-a", LONG_TTL, note="pipeline 42")

    assert info is not None
    assert (info.key, info.owner, info.note) == (key, "runner-a", "pipeline 42")
    assert info.expires_at - info.acquired_at == pytest.approx(LONG_TTL, abs=1.5)
    seen = b.get(key)
    assert seen is not None
    assert (seen.key, seen.owner, seen.note) == (key, "runner-a", "pipeline 42")
    assert a.release(key, "runner-a") is True
    assert b.get(key) is None
    assert b.acquire(key, "runner-b", LONG_TTL) is not None


def test_second_contender_refused_while_live(harness: Harness) -> None:
    a, b = harness.open(), harness.open()
    key = harness.key()
    assert a.acquire(key, "runner-a", LONG_TTL) is not None

    assert b.acquire(key, "runner-b", LONG_TTL) is None
    # Not re-entrant either: a second acquire by the same owner is refused too.
    assert a.acquire(key, "runner-a", LONG_TTL) is None
    holder = b.get(key)
    assert holder is not None and holder.owner == "runner-a"


def test_renew_extends_the_lock(harness: Harness) -> None:
    a, b = harness.open(), harness.open()
    key = harness.key()
    ttl = harness.short_ttl
    first = a.acquire(key, "runner-a", ttl)
    assert first is not None

    _pass_time(harness, ttl * 0.6)
    renewed = a.renew(key, "runner-a", ttl)
    _pass_time(harness, ttl * 0.6)  # now past the first expiry, inside the renewed one

    assert renewed.owner == "runner-a"
    assert renewed.expires_at > first.expires_at
    assert b.acquire(key, "runner-b", ttl) is None
    holder = b.get(key)
    assert holder is not None and holder.owner == "runner-a"


def test_release_and_renew_by_non_owner_refused(harness: Harness) -> None:
    a, b = harness.open(), harness.open()
    key = harness.key()
    assert a.acquire(key, "runner-a", LONG_TTL) is not None

    assert b.release(key, "runner-b") is False
    with pytest.raises(LockLost):
        b.renew(key, "runner-b", LONG_TTL)
    holder = b.get(key)
    assert holder is not None and holder.owner == "runner-a"
    assert b.release(harness.key(), "runner-b") is False  # a key nobody holds


def test_stale_lock_taken_over_only_after_ttl(harness: Harness) -> None:
    crashed, b = harness.open(), harness.open()
    key = harness.key()
    ttl = harness.short_ttl
    assert crashed.acquire(key, "crashed-runner", ttl) is not None

    if harness.clock is not None:
        harness.clock.advance(ttl * 0.98)  # just before the TTL
    assert b.acquire(key, "runner-b", ttl) is None

    harness.let_expire(b, key, ttl)
    taken = b.acquire(key, "runner-b", LONG_TTL)

    assert taken is not None and taken.owner == "runner-b"
    # The crashed holder, back from the dead, finds it lost and cannot remove it.
    with pytest.raises(LockLost):
        crashed.renew(key, "crashed-runner", ttl)
    assert crashed.release(key, "crashed-runner") is False
    holder = crashed.get(key)
    assert holder is not None and holder.owner == "runner-b"


def test_exactly_one_winner_for_a_fresh_lock(harness: Harness) -> None:
    key = harness.key()
    winners = _contend(harness, key)

    assert len(winners) == 1
    holder = harness.open().get(key)
    assert holder is not None and holder.owner == winners[0].owner


def test_exactly_one_winner_for_a_stale_takeover(harness: Harness) -> None:
    crashed = harness.open()
    key = harness.key()
    assert crashed.acquire(key, "crashed-runner", harness.short_ttl) is not None
    harness.let_expire(crashed, key, harness.short_ttl)

    winners = _contend(harness, key)

    assert len(winners) == 1
    holder = crashed.get(key)
    assert holder is not None and holder.owner == winners[0].owner


def test_lost_lock_detected_on_renew(harness: Harness) -> None:
    a, admin = harness.open(), harness.open()
    key = harness.key()
    assert a.acquire(key, "runner-a", LONG_TTL) is not None

    assert admin.force_break(key) is True

    with pytest.raises(LockLost):
        a.renew(key, "runner-a", LONG_TTL)
    assert a.release(key, "runner-a") is False


def test_list_and_force_break(harness: Harness) -> None:
    a, admin = harness.open(), harness.open()
    first, second = harness.key(), harness.key() + "/nested/path"
    assert a.acquire(first, "runner-a", LONG_TTL, note="one") is not None
    assert a.acquire(second, "runner-a", LONG_TTL, note="two") is not None

    listed = {info.key: info for info in admin.list()}

    assert {first, second} <= set(listed)
    assert (listed[first].owner, listed[first].note) == ("runner-a", "one")
    assert (listed[second].owner, listed[second].note) == ("runner-a", "two")
    assert admin.force_break(first) is True
    assert admin.force_break(first) is False
    assert admin.get(first) is None
    assert first not in {info.key for info in admin.list()}
    assert admin.acquire(first, "admin", LONG_TTL) is not None
    holder = admin.get(second)
    assert holder is not None and holder.owner == "runner-a"


def _pass_time(harness: Harness, seconds: float) -> None:
    if harness.clock is not None:
        harness.clock.advance(seconds)
    else:
        threading.Event().wait(seconds)


def _contend(harness: Harness, key: str) -> list[LockInfo]:
    """CONTENDERS clients, released together, each trying once to take `key`."""
    clients: list[LockBackend] = [harness.open() for _ in range(CONTENDERS)]
    start = threading.Barrier(CONTENDERS)
    results: list[LockInfo | None] = [None] * CONTENDERS
    errors: list[BaseException] = []

    def contend(index: int) -> None:
        try:
            start.wait(timeout=10)
            results[index] = clients[index].acquire(key, f"contender-{index}", LONG_TTL)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(CONTENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return [info for info in results if info is not None]
