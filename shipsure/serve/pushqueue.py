"""The pushes waiting to be verified: bounded, coalesced per digest, indexes debounced.

One entry per (repository, digest): a second event for a digest still waiting adds its tag
to the entry and is counted as coalesced. When an entry is due:
- an image manifest pushed by tag: at once;
- an index: after `index_debounce` seconds (each new event for it restarts the wait), so
  the children a client pushed first are in and their events have arrived;
- a manifest pushed by digest only (an index child, an attestation, a referrer): after twice
  that, because the index that lists it usually comes meanwhile, and its walk covers the
  child. A walk reports what it covered (`covered`); a digest-only entry whose digest a walk
  started after its event has covered is coalesced instead of walked again.

The queue holds at most `max_pending` entries: an event that finds it full is refused,
counted as dropped and logged; the scheduled probe checks that push later. Memory is
bounded by `max_pending` and by the `max_covered` most recent covered digests.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shipsure.serve.events import KIND_INDEX, PushEvent

DEFAULT_MAX_PENDING = 10_000
DEFAULT_INDEX_DEBOUNCE = 2.0
DEFAULT_MAX_COVERED = 50_000

Key = tuple[str, str]  # (repository, digest)


@dataclass
class PushJob:
    """One pushed manifest to verify; `received` is wall-clock Unix seconds of its first
    event, `last_received` of its latest; `due` is on the monotonic clock."""

    repository: str
    digest: str
    tags: set[str] = field(default_factory=set)
    kind: str = "image"
    media_type: str | None = None
    received: float = 0.0
    last_received: float = 0.0
    due: float = 0.0
    events: int = 1

    @property
    def key(self) -> Key:
        return (self.repository, self.digest)


@dataclass
class QueueCounts:
    queued: int = 0
    coalesced: int = 0
    dropped: int = 0


class PushQueue:
    """Thread-safe. `offer()` from request threads, `take()` from the worker."""

    def __init__(
        self,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        index_debounce: float = DEFAULT_INDEX_DEBOUNCE,
        max_covered: int = DEFAULT_MAX_COVERED,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pending = max(1, max_pending)
        self.index_debounce = max(0.0, index_debounce)
        self.max_covered = max(1, max_covered)
        self.clock = clock
        self.monotonic = monotonic
        self.counts = QueueCounts()
        self._pending: dict[Key, PushJob] = {}
        self._covered: OrderedDict[Key, float] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def offer(self, event: PushEvent) -> str:
        """Queue or coalesce one push: returns "queued", "coalesced" or "dropped"."""
        now, mono = self.clock(), self.monotonic()
        with self._cond:
            job = self._pending.get((event.repository, event.digest))
            if job is not None:
                if event.tag:
                    job.tags.add(event.tag)
                job.last_received = now
                job.events += 1
                if event.kind == KIND_INDEX:
                    job.kind = KIND_INDEX
                delay = mono + self._delay(job.kind, event.tag, job.tags)
                # An index's quiet period starts again; anything else only gets sooner.
                job.due = max(job.due, delay) if job.kind == KIND_INDEX else min(job.due, delay)
                self.counts.coalesced += 1
                self._cond.notify()
                return "coalesced"
            if len(self._pending) >= self.max_pending or self._closed:
                self.counts.dropped += 1
                return "dropped"
            self._pending[(event.repository, event.digest)] = PushJob(
                repository=event.repository,
                digest=event.digest,
                tags={event.tag} if event.tag else set(),
                kind=event.kind,
                media_type=event.media_type,
                received=now,
                last_received=now,
                due=mono + self._delay(event.kind, event.tag, set()),
            )
            self.counts.queued += 1
            self._cond.notify()
            return "queued"

    def _delay(self, kind: str, tag: str | None, tags: set[str]) -> float:
        if kind == KIND_INDEX:
            return self.index_debounce
        if tag or tags:
            return 0.0
        return 2 * self.index_debounce

    def take(self, timeout: float | None = None) -> PushJob | None:
        """The next due job (earliest due first), waiting up to `timeout` seconds for one;
        None on timeout or when closed. Digest-only jobs a walk covered are skipped here
        and counted as coalesced."""
        deadline = None if timeout is None else self.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = self.monotonic()
                job = min(self._pending.values(), key=lambda j: j.due, default=None)
                if job is not None and job.due <= now:
                    del self._pending[job.key]
                    covered = self._covered.get(job.key)
                    if not job.tags and covered is not None and covered >= job.last_received:
                        self.counts.coalesced += job.events
                        continue
                    return job
                wait = None if job is None else job.due - now
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def covered(self, keys: Iterable[Key], started: float) -> None:
        """A walk that started at `started` (Unix seconds) checked these objects."""
        with self._cond:
            for key in keys:
                self._covered[key] = started
                self._covered.move_to_end(key)
            while len(self._covered) > self.max_covered:
                self._covered.popitem(last=False)

    def close(self) -> list[PushJob]:
        """Stop handing out work; return what was still waiting (to be saved)."""
        with self._cond:
            self._closed = True
            left = list(self._pending.values())
            self._pending.clear()
            self._cond.notify_all()
            return left

    def restore(self, jobs: Iterable[PushJob]) -> None:
        """Put back jobs saved by a previous run (due now, within the bound)."""
        mono = self.monotonic()
        with self._cond:
            for job in jobs:
                if len(self._pending) >= self.max_pending:
                    self.counts.dropped += 1
                    continue
                job.due = mono
                self._pending.setdefault(job.key, job)
            self._cond.notify()
