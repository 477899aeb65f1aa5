"""`shipsure scan`: an offline fsck of distribution's storage.

Reads the storage directly (filesystem or S3), walks every repository the way a pull would
(tag -> index -> child -> config and layers), and reports every on-disk fault of
registry-facts §4 plus malformed links, dangling and missing layer links, unreferenced
blobs and stale uploads. Safe while the registry runs: each fault is re-checked on storage
before it is reported, so a concurrent push or delete never becomes a finding.

Scale-out: `Shard` splits repositories deterministically; a sharded run leaves the global
blob check (which blobs nothing references) to `merge_reports`.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.recheck import Present, still_holds
from shipsure.checks.scan.walk import Candidate, RepositoryWalk, WalkResult
from shipsure.errors import BadInputError, CouldNotRunError, UsageError
from shipsure.findings import CHECK_ERROR, Finding, Report, Severity
from shipsure.storage import blob_hasher, layout
from shipsure.storage.digests import DigestLog
from shipsure.storage.filesystem import FilesystemStorage
from shipsure.storage.interface import Storage, StorageError, StorageMissingError
from shipsure.storage.inventory import (
    MISSING,
    BlobStore,
    ReadProblem,
    discover_repositories,
    list_blobs,
    read_repository,
)

COMMAND = "scan"
DEFAULT_UPLOAD_MAX_AGE = 7 * 86400.0  # distribution's upload purging age (168 h)
# A blob a push is writing right now is unreferenced until its manifest lands; only blobs
# older than this are reported as garbage-collection candidates.
DEFAULT_UNREFERENCED_MIN_AGE = 3600.0
DEFAULT_WORKERS = 4  # S3: threads mostly wait on the network


def default_local_workers() -> int:
    """A local filesystem scan is bound by the interpreter, not the disk: extra threads only
    hand the interpreter lock back and forth (measured on a warm 44k-file tree: 1 thread
    1.2-2.2 s, 4 threads 2.8-3.1 s), so repositories are walked by one process per core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# A registry writes a push as several files (data, revision link, tag links) milliseconds
# apart; a fault must still hold this long after it was seen to be reported.
DEFAULT_RECHECK_DELAY = 0.5


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        i, sep, n = text.partition("/")
        try:
            shard = cls(int(i), int(n))
        except ValueError:
            shard = None
        if not sep or shard is None or shard.count < 1 or not 0 <= shard.index < shard.count:
            raise UsageError(f"invalid shard {text!r}: want I/N with 0 <= I < N, e.g. 0/4")
        return shard

    def owns(self, repository: str) -> bool:
        # crc32 is stable across runs, machines and Python versions (hash() is not).
        return zlib.crc32(repository.encode()) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class ScanOptions:
    verify_content: bool = False
    upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE
    unreferenced_min_age: float = DEFAULT_UNREFERENCED_MIN_AGE
    shard: Shard | None = None
    # Threads on S3, processes on a local filesystem; None: DEFAULT_WORKERS threads on S3,
    # one process per core locally.
    workers: int | None = None
    now: float | None = None  # "now" for ages; the clock when None
    recheck_delay: float = DEFAULT_RECHECK_DELAY


ProgressCallback = Callable[[int, int], None]


def scan(
    storage: Storage, options: ScanOptions, progress: ProgressCallback | None = None
) -> Report:
    """Scan the storage and return a report of re-checked findings."""
    started = time.monotonic()
    now = options.now if options.now is not None else time.time()
    _check_root(storage)
    report = Report(COMMAND)
    problems: list[ReadProblem] = []
    repositories = discover_repositories(storage, problems)
    if options.shard is not None:
        repositories = [r for r in repositories if options.shard.owns(r)]
    blobs = BlobStore(storage)
    candidates: list[Candidate] = [_read_problem(p) for p in problems]
    local = isinstance(storage, FilesystemStorage)
    workers = options.workers or (default_local_workers() if local else DEFAULT_WORKERS)
    walk_all = _WalkAll(storage, repositories, blobs, options, now, progress, workers, local)
    # Unsharded scans and shard 0 also list the global blob store (see merge_reports).
    list_store = options.shard is None or options.shard.index == 0
    if not options.verify_content:
        walked = walk_all(verify_content=False, list_store=list_store)
    else:
        walked = _walk_verifying(storage, walk_all, options, list_store)
    candidates += walked.candidates
    referenced = walked.referenced
    store = walked.store
    for what, n in walked.counts.items():
        report.count(what, n)
    report.checked.setdefault("repositories", 0)
    report.count("manifests", walked.manifests.count_distinct())
    del walked

    scan_meta: dict[str, object] = {"storage": storage.describe()}
    blob_problems: list[ReadProblem] = []
    if list_store:
        if store is None:
            store = _BlobListing.of(storage)
        blob_problems = store.problems
        unreferenced = _unreferenced(blobs, referenced, store.digests, now, options, blob_problems)
    if options.shard is None:
        candidates += unreferenced
    else:
        scan_meta["shard"] = str(options.shard)
        scan_meta["referenced"] = list(referenced.distinct())
        if options.shard.index == 0:
            # The dedicated shard for the global blob check: its candidates, minus what the
            # other shards reference, are the unreferenced blobs (see merge_reports).
            scan_meta["blob_candidates"] = {
                c.digest: c.details["bytes"] for c in unreferenced if c.digest is not None
            }
    candidates += [_read_problem(p) for p in blob_problems]
    report.extend(_confirmed(storage, candidates, options, workers))
    report.meta.update(
        {
            "scan": scan_meta,
            "options": {
                "verify_content": options.verify_content,
                "upload_max_age_days": options.upload_max_age / 86400,
                "unreferenced_min_age_hours": options.unreferenced_min_age / 3600,
            },
            "duration_seconds": round(time.monotonic() - started, 3),
        }
    )
    return report


@dataclass
class _Walked:
    """What the walks of some repositories found, merged; small enough to send between
    processes (digests are kept as raw bytes)."""

    candidates: list[Candidate] = field(default_factory=list)
    # Every digest any repository names, kept compact: this is the only record of the
    # whole registry a scan holds (repositories are walked and dropped one by one).
    referenced: DigestLog = field(default_factory=DigestLog)
    manifests: DigestLog = field(default_factory=DigestLog)
    counts: dict[str, int] = field(default_factory=dict)
    repositories: int = 0
    store: _BlobListing | None = None  # the global blob store, when listed alongside

    def add(self, result: WalkResult) -> None:
        self.candidates += result.candidates
        self.referenced.update(result.referenced)
        self.manifests.update(result.manifests)
        self._count(result.counts)
        self.repositories += 1

    def merge(self, other: _Walked) -> None:
        self.candidates += other.candidates
        self.referenced.merge(other.referenced)
        self.manifests.merge(other.manifests)
        self._count(other.counts)
        self.repositories += other.repositories
        self.store = self.store or other.store

    def _count(self, counts: dict[str, int]) -> None:
        for what, n in counts.items():
            self.counts[what] = self.counts.get(what, 0) + n


@dataclass
class _WalkAll:
    """Walks every repository and collects the results: in threads on S3 (they wait on the
    network), in forked processes on a local filesystem (the walk is interpreter-bound)."""

    storage: Storage
    repositories: list[str]
    blobs: BlobStore
    options: ScanOptions
    now: float
    progress: ProgressCallback | None
    workers: int
    local: bool

    def __call__(
        self,
        *,
        verify_content: bool,
        verify_only: frozenset[str] | None = None,
        list_store: bool = False,
    ) -> _Walked:
        def walk(name: str) -> WalkResult:
            inv = read_repository(self.storage, name)
            return RepositoryWalk(
                inv,
                self.blobs,
                verify_content=verify_content,
                verify_only=verify_only,
                upload_max_age=self.options.upload_max_age,
                now=self.now,
            ).run()

        walked = _Walked()
        total = len(self.repositories)
        if self.local and self.workers > 1 and total > 1 and _can_fork():
            store = self.storage if list_store else None
            parts = _in_processes(walk, self.repositories, self.workers, store)
        else:
            parts = (_one(r) for r in _map(walk, self.repositories, self.workers))
        for part in parts:
            walked.merge(part)
            if self.progress is not None and part.store is None:
                self.progress(walked.repositories, total)
        return walked


def _one(result: WalkResult) -> _Walked:
    part = _Walked()
    part.add(result)
    return part


# The walk a forked worker runs: set in the parent just before the workers are forked, so
# they inherit it (storage, caches, options) instead of receiving it pickled.
_forked_walk: Callable[[str], WalkResult] | None = None


def _walk_chunk(names: list[str]) -> _Walked:
    assert _forked_walk is not None
    part = _Walked()
    for name in names:
        part.add(_forked_walk(name))
    return part


def _list_store_task(storage: Storage) -> _Walked:
    return _Walked(store=_BlobListing.of(storage))


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _in_processes(
    walk: Callable[[str], WalkResult],
    names: list[str],
    workers: int,
    list_store: Storage | None,
) -> Iterator[_Walked]:
    """Chunks of repositories walked by `workers` forked processes, results in order, and
    the listing of `list_store`'s global blob store as one more task beside them.

    Fork, not spawn: a worker starts in milliseconds with everything the parent has
    imported and opened. Chunks are small enough to balance uneven repositories and to
    report progress, large enough that sending results back stays cheap.
    """
    global _forked_walk
    workers = min(workers, len(names))
    size = max(1, -(-len(names) // (workers * 8)))
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    _forked_walk = walk
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            # ProcessPoolExecutor forks all its workers at the first submit, before it
            # starts any thread of its own.
            listing = pool.submit(_list_store_task, list_store) if list_store else None
            yield from pool.map(_walk_chunk, chunks)
            if listing is not None:
                yield listing.result()
    except BrokenProcessPool:
        raise CouldNotRunError(
            "a scan worker process died (out of memory?); try --workers 1"
        ) from None
    finally:
        _forked_walk = None


def _walk_verifying(
    storage: Storage, walk_all: _WalkAll, options: ScanOptions, list_store: bool
) -> _Walked:
    """The walk with every referenced blob's content verified.

    On a local filesystem another process hashes the whole blob store while the walk runs
    without hashing (other cores instead of one interpreter). Only when it names blobs that
    did not hash to their digest (or could not be read) is the walk repeated, hashing just
    those, so findings, tags and re-checks are exactly those of hashing in the walk (storage
    with corrupt blobs pays for that second walk; clean storage, the usual case, does not).
    A sharded scan hashes only its own repositories' blobs, and S3 has no local files: both
    hash in the walk, as does any scan whose hashing process cannot start or does not finish.
    """
    hasher = None
    if options.shard is None and isinstance(storage, FilesystemStorage):
        hasher = blob_hasher.start(storage.root)
    if hasher is None:
        return walk_all(verify_content=True, list_store=list_store)
    try:
        walked = walk_all(verify_content=False, list_store=list_store)
        suspects = hasher.result()
    finally:
        hasher.stop()
    if suspects is not None and not suspects:
        return walked
    store = walked.store
    del walked  # the second walk replaces it whole
    again = walk_all(
        verify_content=True, verify_only=None if suspects is None else frozenset(suspects)
    )
    again.store = store
    return again


def _check_root(storage: Storage) -> None:
    storage.check_root()  # raises StorageError (exit 3) when the root cannot be read
    try:
        storage.list_dir(layout.V2)
    except StorageMissingError:
        try:
            entries = storage.list_dir("")
        except StorageError:
            entries = []
        if entries:
            raise BadInputError(
                f"storage root {storage.describe()}: no {layout.V2} inside; pass the "
                "registry's rootdirectory (the folder that holds `docker/`)"
            ) from None
        # An empty root is a registry nobody pushed to yet: clean, not an error.


def _map(fn: Callable[[str], WalkResult], names: list[str], workers: int) -> Iterator[WalkResult]:
    if workers <= 1 or len(names) <= 1:
        yield from map(fn, names)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        # Bounded look-ahead keeps memory flat however many repositories there are.
        window = workers * 4
        pending = [pool.submit(fn, n) for n in names[:window]]
        next_index = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_index < len(names):
                pending.append(pool.submit(fn, names[next_index]))
                next_index += 1
            yield result


def _read_problem(problem: ReadProblem) -> Candidate:
    return Candidate(
        CHECK_ERROR,
        None,
        None,
        None,
        f"could not read {problem.path}: {problem.message}",
        (),
        (),
        {"storage_path": problem.path},
    )


@dataclass
class _BlobListing:
    """Every digest with a folder in the global blob store (data file not checked)."""

    digests: DigestLog
    problems: list[ReadProblem]

    @classmethod
    def of(cls, storage: Storage) -> _BlobListing:
        problems: list[ReadProblem] = []
        digests = DigestLog()
        digests.update(list_blobs(storage, problems))
        return cls(digests, problems)


def _unreferenced(
    blobs: BlobStore,
    referenced: DigestLog,
    present: DigestLog,
    now: float,
    options: ScanOptions,
    problems: list[ReadProblem],
) -> list[Candidate]:
    """Blobs no manifest of the scanned repositories names: garbage-collection candidates."""
    found = []
    for digest in present.difference(referenced):
        st = blobs.stat(digest)
        if st == MISSING:  # a blob folder without data: nothing to reclaim or serve
            continue
        if isinstance(st, str):
            problems.append(ReadProblem(layout.blob_data(digest), st))
            continue
        if now - st.mtime < options.unreferenced_min_age:
            continue
        found.append(
            Candidate(
                k.BLOB_UNREFERENCED,
                None,
                digest,
                None,
                f"blob {digest} ({st.size} bytes) is referenced by no manifest: garbage "
                "collection will delete it",
                (f"blob {digest}",),
                (Present(layout.blob_data(digest)),),
                {"storage_path": layout.blob_data(digest), "bytes": st.size},
            )
        )
    return found


def _confirmed(
    storage: Storage, candidates: list[Candidate], options: ScanOptions, workers: int
) -> list[Finding]:
    def holds(c: Candidate) -> bool:
        return all(still_holds(storage, fact) for fact in c.evidence)

    if options.recheck_delay > 0 and any(c.evidence for c in candidates):
        time.sleep(options.recheck_delay)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        kept = list(pool.map(holds, candidates))
    return [to_finding(c) for c, keep in zip(candidates, kept, strict=True) if keep]


def to_finding(c: Candidate) -> Finding:
    tags = sorted(c.tags)
    severity = Severity.ERROR if c.kind == CHECK_ERROR else k.severity(c.kind, len(tags))
    details = dict(c.details)
    if c.kind != CHECK_ERROR and c.kind not in (k.BLOB_UNREFERENCED, k.UPLOAD_STALE):
        details["tags"] = tags
    if tags and c.kind not in k.TAG_LEVEL:
        message = f"{c.message}; breaks {_tag_list(tags)}"
    else:
        message = c.message
    return Finding(
        kind=c.kind,
        severity=severity,
        message=message,
        repository=c.repository,
        reference=c.reference,
        digest=c.digest,
        path=c.path,
        details=details,
    )


def _tag_list(tags: Iterable[str]) -> str:
    tags = list(tags)
    shown = ", ".join(tags[:5])
    more = f" and {len(tags) - 5} more" if len(tags) > 5 else ""
    return f"tag{'s' if len(tags) > 1 else ''} {shown}{more}"
