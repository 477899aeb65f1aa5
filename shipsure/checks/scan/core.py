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

import dataclasses
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.executor import (
    DEFAULT_THREADS,
    BlobListing,
    Executor,
    Walked,
    WalkJob,
)
from shipsure.checks.scan.recheck import Present, recently_changed, still_holds
from shipsure.checks.scan.shard import Shard
from shipsure.checks.scan.walk import Candidate, link_outside_candidate, temp_file_candidate
from shipsure.errors import BadInputError
from shipsure.findings import CHECK_ERROR, Finding, Report
from shipsure.model import DIGEST_ALGORITHMS
from shipsure.storage import blob_hasher, layout
from shipsure.storage.digests import DigestLog
from shipsure.storage.interface import (
    FileInfo,
    Missing,
    Storage,
    StorageError,
    StorageLinkOutsideError,
    StorageMissingError,
    Unreadable,
)
from shipsure.storage.inventory import (
    BlobStore,
    ReadProblem,
    discover_repositories,
    temp_files_in,
)

COMMAND = "scan"
DEFAULT_UPLOAD_MAX_AGE = 7 * 86400.0  # distribution's upload purging age (168 h)
# A blob a push is writing right now is unreferenced until its manifest lands; only blobs
# older than this are reported as garbage-collection candidates.
DEFAULT_UNREFERENCED_MIN_AGE = 3600.0
DEFAULT_WORKERS = DEFAULT_THREADS  # threads, where the storage cannot fork workers


# A registry writes a push as several files (data, revision link, tag links) milliseconds
# apart; a fault whose files changed within this long must still hold this long after it
# was seen to be reported (older evidence is re-read once, without waiting).
DEFAULT_RECHECK_DELAY = 0.5


@dataclass(frozen=True)
class ScanOptions:
    verify_content: bool = False
    upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE
    unreferenced_min_age: float = DEFAULT_UNREFERENCED_MIN_AGE
    shard: Shard | None = None
    # Processes where the storage can fork workers (a local filesystem), else threads (S3);
    # None: one process per core, or DEFAULT_WORKERS threads.
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
    check_storage_root(storage)
    report = Report(COMMAND)
    problems: list[ReadProblem] = []
    repositories = discover_repositories(storage, problems)
    if options.shard is not None:
        repositories = [r for r in repositories if options.shard.owns(r)]
    blobs = BlobStore(storage)
    candidates: list[Candidate] = [_read_problem(p) for p in problems]
    executor = Executor.for_storage(storage, options.workers)
    job = WalkJob(storage, False, options.upload_max_age, now)

    def walk_all(job: WalkJob, list_store: bool = False) -> Walked:
        return executor.walk(job, repositories, blobs, list_store=list_store, progress=progress)

    # Unsharded scans and shard 0 also list the global blob store (see merge_reports).
    list_store = options.shard is None or options.shard.index == 0
    if not options.verify_content:
        walked = walk_all(job, list_store)
    else:
        walked = _walk_verifying(storage, walk_all, job, options, list_store)
    candidates += walked.candidates
    referenced = walked.referenced
    store = walked.store
    for what, n in walked.counts.items():
        report.count(what, n)
    report.checked.setdefault("repositories", 0)
    report.count("manifests", walked.manifests.count_distinct())
    del walked

    scan_meta: dict[str, object] = {
        "storage": storage.describe(),
        "workers": executor.describe(),
    }
    blob_problems: list[ReadProblem] = []
    if list_store:
        if store is None:
            store = BlobListing.of(storage)
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
    candidates = _one_per_link(candidates)
    report.extend(_confirmed(storage, candidates, options, executor.workers))
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


def _walk_verifying(
    storage: Storage,
    walk_all: Callable[[WalkJob, bool], Walked],
    job: WalkJob,
    options: ScanOptions,
    list_store: bool,
) -> Walked:
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
    if options.shard is None and storage.local_root is not None:
        hasher = blob_hasher.start(storage.local_root, DIGEST_ALGORITHMS)
    verifying = dataclasses.replace(job, verify_content=True)
    if hasher is None:
        return walk_all(verifying, list_store)
    try:
        walked = walk_all(job, list_store)
        suspects = hasher.result()
    finally:
        hasher.stop()
    if suspects is not None and not suspects:
        return walked
    store = walked.store
    del walked  # the second walk replaces it whole
    again = walk_all(
        dataclasses.replace(
            verifying, verify_only=None if suspects is None else frozenset(suspects)
        ),
        False,
    )
    again.store = store
    return again


def check_storage_root(storage: Storage) -> None:
    """The root is readable and holds distribution's layout (or is empty: a registry
    nobody pushed to yet). A folder above or below the rootdirectory is the user's bad
    input (exit 2), not a registry with nothing in it: every command on storage asks."""
    storage.check_root()  # raises StorageError (exit 3) when the root cannot be read
    try:
        storage.list_dir(layout.V2)
    except StorageLinkOutsideError:
        return  # every read below stops at that link: it is reported as a finding
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


def _read_problem(problem: ReadProblem) -> Candidate:
    if problem.link:
        return link_outside_candidate(None, problem.link, problem.message)
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


def _one_per_link(candidates: list[Candidate]) -> list[Candidate]:
    """One `link-outside-root` per link: every repository reading through a linked `blobs`
    folder stopped at the same link."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.kind == k.LINK_OUTSIDE_ROOT:
            link = c.details["storage_path"]
            if link in seen:
                continue
            seen.add(link)
        out.append(c)
    return out


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
        match blobs.stat(digest):
            case Missing():  # a blob folder without data: nothing to reclaim or serve...
                # ...but maybe what an interrupted write of it left (rare: listed only here).
                for path in temp_files_in(blobs.storage, layout.blob_dir(digest)):
                    fault = temp_file_candidate(blobs.storage, None, path, now)
                    if fault is not None:
                        found.append(fault)
                continue
            case Unreadable(why, link):
                problems.append(ReadProblem(layout.blob_data(digest), why, link))
                continue
            case FileInfo(size, mtime) if now - mtime >= options.unreferenced_min_age:
                found.append(
                    Candidate(
                        k.BLOB_UNREFERENCED,
                        None,
                        digest,
                        None,
                        f"blob {digest} ({size} bytes) is referenced by no manifest: garbage "
                        "collection will delete it",
                        (f"blob {digest}",),
                        (Present(layout.blob_data(digest)),),
                        {"storage_path": layout.blob_data(digest), "bytes": size},
                    )
                )
    return found


def _confirmed(
    storage: Storage, candidates: list[Candidate], options: ScanOptions, workers: int
) -> list[Finding]:
    """The candidates whose evidence still holds, re-read now; those whose evidence changed
    within `recheck_delay` (a push or delete may be half-way) are read once more after that
    long. Settled evidence costs no wait: a scan that finds old damage ends at once."""

    def holds(c: Candidate) -> bool:
        return all(still_holds(storage, fact) for fact in c.evidence)

    def young(c: Candidate) -> bool:
        return bool(c.evidence) and recently_changed(storage, c.evidence, options.recheck_delay)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        kept = [c for c, ok in zip(candidates, pool.map(holds, candidates), strict=True) if ok]
        if options.recheck_delay > 0:
            unsettled = {id(c) for c, y in zip(kept, pool.map(young, kept), strict=True) if y}
            if unsettled:
                _wait(options.recheck_delay)
                again = [c for c in kept if id(c) in unsettled]
                gone = {
                    id(c) for c, ok in zip(again, pool.map(holds, again), strict=True) if not ok
                }
                kept = [c for c in kept if id(c) not in gone]
    return [to_finding(c) for c in kept]


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def to_finding(c: Candidate) -> Finding:
    tags = sorted(c.tags)
    severity = k.severity(c.kind, len(tags), breaks_tag=c.breaks_tag)
    details = dict(c.details)
    if c.kind != CHECK_ERROR and c.kind not in k.NOT_TAGGED:
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
        remedy=c.remedy,
    )


def _tag_list(tags: Iterable[str]) -> str:
    tags = list(tags)
    shown = ", ".join(tags[:5])
    more = f" and {len(tags) - 5} more" if len(tags) > 5 else ""
    return f"tag{'s' if len(tags) > 1 else ''} {shown}{more}"
