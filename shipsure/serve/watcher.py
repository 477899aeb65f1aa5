"""The watcher's work: verify queued pushes and run the probe on its interval.

Two kinds of threads, each with a registry client of its own, so a long probe never delays
a push verification:
- push workers take due jobs from the `PushQueue` and walk each pushed manifest by digest
  with `verify`'s walk (deep by default: every pushed blob is read and re-hashed, which is
  what catches a layer whose data is gone behind a HEAD 200 from a stale link or cache);
- the probe thread runs `checks.probe.probe` on the whole registry every `probe_interval`
  seconds (sooner when the queue overflowed: those pushes fall back to it).

Results go to the `Store`; the counters here are what /metrics adds to the store's view.
`stop()` hands unfinished work back: jobs still queued are saved and verified after the
next start; a walk in flight is finished (its requests have timeouts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shipsure.checks.probe import ProbeOptions, probe
from shipsure.checks.verify import CheckedKey, VerifyOptions, walk
from shipsure.findings import Report
from shipsure.model import Digest, Reference
from shipsure.registry.interface import Registry
from shipsure.serve.pushqueue import PushJob, PushQueue
from shipsure.serve.store import Store

log = logging.getLogger("shipsure.serve")

# Seconds from an event's arrival to its verification being recorded (histogram buckets).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# After an overflow the probe runs within this many seconds, not a whole interval later.
OVERFLOW_PROBE_DELAY = 60.0


class _EveryRepository(frozenset[str]):
    """A set holding every name: the probe then lists every repository's clean and
    unchecked tags (`ProbeOptions.remember_tags_of`), which the tag states are made of."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str)


@dataclass(frozen=True)
class WatchOptions:
    push_deep: bool = True
    push_workers: int = 2
    walk_concurrency: int = 16
    referrers: bool = True
    probe_interval: float = 3600.0  # 0: no scheduled probe
    probe_deep_sample: float = 0.0
    probe_rate: float = 0.0


@dataclass
class Counters:
    """Counters since start (Prometheus counters reset with the process, as expected)."""

    notifications: dict[str, int] = field(default_factory=dict)
    events_ignored: int = 0
    verifications: dict[str, int] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0
    last_verification: float = 0.0
    probe_runs: int = 0
    probe_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notification(self, outcome: str) -> None:
        with self.lock:
            self.notifications[outcome] = self.notifications.get(outcome, 0) + 1

    def verified(self, outcome: str, latency: float, when: float) -> None:
        with self.lock:
            self.verifications[outcome] = self.verifications.get(outcome, 0) + 1
            self.latency_count += 1
            self.latency_sum += latency
            for i, bound in enumerate(LATENCY_BUCKETS):
                if latency <= bound:
                    self.latency_buckets[i] += 1
            self.last_verification = when


class Watcher:
    """Owns the worker threads. `registry_factory()` opens a new client (one per thread)."""

    def __init__(
        self,
        host: str,
        registry_factory: Callable[[], Registry],
        store: Store,
        queue: PushQueue,
        options: WatchOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.registry_factory = registry_factory
        self.store = store
        self.queue = queue
        self.options = options
        self.clock = clock
        self.counters = Counters()
        self.probe_running = False
        self.probe_started: float | None = None
        self.started = clock()
        self._stop = threading.Event()
        self._wake_probe = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[Registry] = []
        self.last_probe: Report | None = store.last_probe_report()

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        restored = self.store.take_pending()
        if restored:
            log.info("resuming pushes queued before the last stop", extra={"jobs": len(restored)})
            self.queue.restore(restored)
        for i in range(max(1, self.options.push_workers)):
            self._spawn(f"push-{i}", self._push_loop)
        if self.options.probe_interval > 0:
            self._spawn("probe", self._probe_loop)

    def _spawn(self, name: str, target: Callable[[Registry], None]) -> None:
        client = self.registry_factory()
        self._clients.append(client)
        thread = threading.Thread(
            target=target, args=(client,), name=f"shipsure-{name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, grace: float = 20.0) -> int:
        """Stop taking work, let walks in flight finish (up to `grace` seconds), save
        what is still queued; returns how many jobs were saved."""
        self._stop.set()
        self._wake_probe.set()
        left = self.queue.close()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            if thread.name == "shipsure-probe":
                continue  # a probe is not worth waiting for: the next start runs it again
            thread.join(max(0.0, deadline - time.monotonic()))
        saved = self.store.save_pending(left)
        for client in self._clients:
            client.close()
        return saved

    def overflowed(self) -> None:
        """The queue refused a push: bring the next probe forward."""
        self._wake_probe.set()

    # --- push verification ------------------------------------------------------------

    def _push_loop(self, registry: Registry) -> None:
        while not self._stop.is_set():
            job = self.queue.take(timeout=1.0)
            if job is None:
                continue
            try:
                self.verify_push(job, registry)
            except Exception:  # a bug must not kill the worker; say so loudly
                log.exception("push verification failed", extra={"repository": job.repository})
                self.counters.verified("failed", 0.0, self.clock())

    def verify_push(self, job: PushJob, registry: Registry) -> str:
        """Walk one pushed manifest (by digest) and record what was found."""
        started = self.clock()
        reference = Reference(self.host, job.repository, None, Digest.parse(job.digest))
        report = Report(command="serve")
        checked: set[CheckedKey] = set()
        options = VerifyOptions(
            deep=self.options.push_deep,
            referrers=self.options.referrers,
            workers=self.options.walk_concurrency,
        )
        walk([reference], lambda _host: registry, options, report, checked)
        if job.tags:
            tags = sorted(job.tags)
            report.findings[:] = [
                replace(f, details={**f.details, "pushed_tags": tags}) for f in report.findings
            ]
        self.queue.covered(
            ((repo, digest) for repo, is_manifest, digest in checked if is_manifest), started
        )
        finished = self.clock()
        outcome = self.store.record_push(job, report, started, finished)
        latency = max(0.0, finished - job.received)
        self.counters.verified(outcome, latency, finished)
        level = logging.WARNING if outcome != "healthy" else logging.INFO
        log.log(
            level,
            "push verified",
            extra={
                "repository": job.repository,
                "digest": job.digest,
                "tags": sorted(job.tags),
                "outcome": outcome,
                "problems": len(report.problems),
                "check_errors": len(report.check_errors),
                "seconds_since_event": round(latency, 3),
            },
        )
        return outcome

    # --- the scheduled probe ----------------------------------------------------------

    def _probe_loop(self, registry: Registry) -> None:
        last = self.store.recent_probes(1)
        next_run = last[0].finished + self.options.probe_interval if last else self.clock()
        while not self._stop.is_set():
            wait = max(0.0, next_run - self.clock())
            if self._wake_probe.wait(wait):
                self._wake_probe.clear()
                if self._stop.is_set():
                    return
                soon = self.clock() + OVERFLOW_PROBE_DELAY
                if soon < next_run:
                    next_run = soon
                continue
            self.run_probe(registry)
            next_run = self.clock() + self.options.probe_interval

    def run_probe(self, registry: Registry) -> Report | None:
        """One probe of the whole registry, recorded; None when stopping meanwhile."""
        self.probe_running = True
        self.probe_started = self.clock()
        runs = len(self.store.recent_probes(self.store.max_probes))
        options = ProbeOptions(
            workers=self.options.walk_concurrency,
            deep_sample=self.options.probe_deep_sample,
            run_number=runs,
            requests_per_second=self.options.probe_rate,
            referrers=self.options.referrers,
            remember_tags_of=_EveryRepository(),
        )
        log.info("probe started", extra={"registry": self.host})
        try:
            report = probe(registry, options, clock=self.clock)
        except Exception:
            self.counters.probe_failures += 1
            log.exception("probe failed")
            return None
        finally:
            self.probe_running = False
        if self._stop.is_set():
            return None
        self.store.record_probe(report)
        self.last_probe = self.store.last_probe_report()
        self.counters.probe_runs += 1
        meta = report.meta.get("probe", {})
        log.info(
            "probe finished",
            extra={
                "registry": self.host,
                "complete": meta.get("complete"),
                "tags": meta.get("tags"),
                "tags_checked": meta.get("tags_checked"),
                "problems": len(report.problems),
                "check_errors": len(report.check_errors),
                "seconds": meta.get("duration_seconds"),
            },
        )
        return report
