"""Walk many repositories at once: in worker processes or threads, as the storage can.

The storage says which pays (`Storage.can_fork_workers`): a local filesystem walk is bound
by the interpreter, so repositories are walked by one process per core; S3 reads wait on
the network, so threads do. Nothing here is module-global in the calling process: two
scans may run at once, from any threads.

Worker processes start by `fork` when the calling process has no other thread (a worker
starts in milliseconds with everything already imported); when other threads are alive
(a long-running server), forking could copy a lock some thread holds and deadlock the
child, so workers come from a `forkserver` (or `spawn`) instead, and receive the walk
pickled.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from shipsure.checks.scan.options import DEFAULT_THREADS
from shipsure.checks.scan.walk import Candidate, RepositoryWalk, Unknown, WalkResult
from shipsure.errors import CouldNotRunError
from shipsure.storage.digests import DigestLog
from shipsure.storage.interface import Storage
from shipsure.storage.inventory import BlobStore, ReadProblem, list_blobs, read_repository


def default_workers(storage: Storage) -> int:
    """One process per core where the storage can fork workers; else DEFAULT_THREADS.

    A local filesystem scan is bound by the interpreter, not the disk: extra threads only
    hand the interpreter lock back and forth (measured on a warm 44k-file tree: 1 thread
    1.2-2.2 s, 4 threads 2.8-3.1 s)."""
    if not storage.can_fork_workers:
        return DEFAULT_THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class BlobListing:
    """Every digest with a folder in the global blob store (data file not checked)."""

    digests: DigestLog
    problems: list[ReadProblem]

    @classmethod
    def of(cls, storage: Storage) -> BlobListing:
        problems: list[ReadProblem] = []
        digests = DigestLog()
        digests.update(list_blobs(storage, problems))
        return cls(digests, problems)


@dataclass
class Walked:
    """What the walks of some repositories found, merged; small enough to send between
    processes (digests are kept as raw bytes)."""

    candidates: list[Candidate] = field(default_factory=list)
    # Every digest any repository names, kept compact: this is the only record of the
    # whole registry a scan holds (repositories are walked and dropped one by one).
    referenced: DigestLog = field(default_factory=DigestLog)
    manifests: DigestLog = field(default_factory=DigestLog)
    counts: dict[str, int] = field(default_factory=dict)
    repositories: int = 0
    store: BlobListing | None = None  # the global blob store, when listed alongside
    unknown: list[Unknown] = field(default_factory=list)  # see walk.Unknown

    def add(self, result: WalkResult) -> None:
        self.candidates += result.candidates
        self.unknown += result.unknown
        self.referenced.update(result.referenced)
        self.manifests.update(result.manifests)
        self._count(result.counts)
        self.repositories += 1

    def merge(self, other: Walked) -> None:
        self.candidates += other.candidates
        self.unknown += other.unknown
        self.referenced.merge(other.referenced)
        self.manifests.merge(other.manifests)
        self._count(other.counts)
        self.repositories += other.repositories
        self.store = self.store or other.store

    def _count(self, counts: dict[str, int]) -> None:
        for what, n in counts.items():
            self.counts[what] = self.counts.get(what, 0) + n


@dataclass(frozen=True)
class WalkJob:
    """How to walk one repository; picklable, so a spawned worker can receive it."""

    storage: Storage
    verify_content: bool
    upload_max_age: float
    now: float
    verify_only: frozenset[str] | None = None

    def walk(self, name: str, blobs: BlobStore) -> WalkResult:
        inv = read_repository(self.storage, name)
        return RepositoryWalk(
            inv,
            blobs,
            verify_content=self.verify_content,
            verify_only=self.verify_only,
            upload_max_age=self.upload_max_age,
            now=self.now,
        ).run()


@dataclass(frozen=True)
class Executor:
    """Where walks run: `processes` workers (with `start_method`) or threads."""

    workers: int
    processes: bool
    start_method: str = ""

    @classmethod
    def for_storage(cls, storage: Storage, workers: int | None) -> Executor:
        n = workers or default_workers(storage)
        if storage.can_fork_workers and n > 1:
            method = start_method()
            if method:
                return cls(n, True, method)
        return cls(n, False)

    def describe(self) -> str:
        if self.processes:
            return f"{self.workers} processes ({self.start_method})"
        return f"{self.workers} threads"

    def walk(
        self,
        job: WalkJob,
        names: list[str],
        blobs: BlobStore,
        *,
        list_store: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Walked:
        """Every repository of `names` walked by `job`, merged; with `list_store` the global
        blob store is listed alongside (`Walked.store`)."""
        walked = Walked()
        total = len(names)
        if self.processes and total > 1:
            parts = _in_processes(job, names, self.workers, self.start_method, list_store)
        else:
            parts = (_one(r) for r in _in_threads(job, names, blobs, self.workers))
        for part in parts:
            walked.merge(part)
            if progress is not None and part.store is None:
                progress(walked.repositories, total)
        return walked


def start_method() -> str:
    """`fork` when this process runs no other thread, else `forkserver` or `spawn`; "" when
    this platform has none of them (walk in threads)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    for method in ("forkserver", "spawn"):
        if method in methods:
            return method
    return ""


def _one(result: WalkResult) -> Walked:
    part = Walked()
    part.add(result)
    return part


def _in_threads(
    job: WalkJob, names: list[str], blobs: BlobStore, workers: int
) -> Iterator[WalkResult]:
    if workers <= 1 or len(names) <= 1:
        yield from (job.walk(n, blobs) for n in names)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        # Bounded look-ahead keeps memory flat however many repositories there are.
        window = workers * 4
        pending = [pool.submit(job.walk, n, blobs) for n in names[:window]]
        next_index = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_index < len(names):
                pending.append(pool.submit(job.walk, names[next_index], blobs))
                next_index += 1
            yield result


# --- in worker processes -----------------------------------------------------------------
# The job a worker process runs, set once in that worker by its initializer. It lives only
# in the worker: the calling process keeps no state between or during scans.
_job: tuple[WalkJob, BlobStore] | None = None


def _start_worker(job: WalkJob) -> None:
    global _job
    _job = (job, BlobStore(job.storage))


def _walk_chunk(names: list[str]) -> Walked:
    assert _job is not None, "worker started without its job"
    job, blobs = _job
    part = Walked()
    for name in names:
        part.add(job.walk(name, blobs))
    return part


def _list_store_task(storage: Storage) -> Walked:
    return Walked(store=BlobListing.of(storage))


def _in_processes(
    job: WalkJob, names: list[str], workers: int, method: str, list_store: bool
) -> Iterator[Walked]:
    """Chunks of repositories walked by `workers` processes, results in order, and the
    listing of the global blob store as one more task beside them.

    Chunks are small enough to balance uneven repositories and to report progress, large
    enough that sending results back stays cheap.
    """
    workers = min(workers, len(names))
    size = max(1, -(-len(names) // (workers * 8)))
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # The server imports the walk once; each worker forked from it starts warm.
        context.set_forkserver_preload([__name__])
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(job,)
        ) as pool:
            listing = pool.submit(_list_store_task, job.storage) if list_store else None
            yield from pool.map(_walk_chunk, chunks)
            if listing is not None:
                yield listing.result()
    except BrokenProcessPool:
        raise CouldNotRunError(
            "a scan worker process died (out of memory?); try --workers 1"
        ) from None
