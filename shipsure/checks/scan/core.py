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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.executor import BlobListing, Executor, Walked, WalkJob
from shipsure.checks.scan.options import (
    ScanOptions,
    start_hashing,
)
from shipsure.checks.scan.recheck import Present, recently_changed, still_holds
from shipsure.checks.scan.walk import (
    Candidate,
    Unknown,
    link_outside_candidate,
    temp_file_candidate,
)
from shipsure.findings import CHECK_ERROR, Finding, Report
from shipsure.storage import layout
from shipsure.storage.blob_hasher import BackgroundHasher
from shipsure.storage.digests import DigestLog
from shipsure.storage.interface import (
    FileInfo,
    Missing,
    Storage,
    Unreadable,
)
from shipsure.storage.inventory import (
    BlobStore,
    ReadProblem,
    check_registry_root,
    discover_repositories,
    repositories_gone,
    temp_files_in,
)

COMMAND = "scan"

ProgressCallback = Callable[[int, int], None]


def scan(
    storage: Storage,
    options: ScanOptions,
    progress: ProgressCallback | None = None,
    *,
    hashing: BackgroundHasher | None = None,
) -> Report:
    """Scan the storage and return a report of re-checked findings.

    `hashing`: the process `options.start_hashing` started for this scan when the caller
    started it early (the command line does, before this module loads); otherwise the scan
    starts it. Either way the scan stops it. Raises StorageError (exit 3) when the root
    cannot be read, BadInputError (exit 2) when it is not a registry's rootdirectory."""
    started = time.monotonic()
    try:
        check_registry_root(storage)
        if hashing is None:
            hashing = start_hashing(storage, options)
        return _scan(storage, options, progress, hashing, started)
    finally:
        if hashing is not None:
            hashing.stop()


def _scan(
    storage: Storage,
    options: ScanOptions,
    progress: ProgressCallback | None,
    hashing: BackgroundHasher | None,
    started: float,
) -> Report:
    now = options.now if options.now is not None else time.time()
    report = Report(COMMAND)
    problems: list[ReadProblem] = []
    repositories = discover_repositories(storage, problems)
    gone = repositories_gone(storage)
    if gone is not None:
        problems.append(gone)
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
        walked = _walk_verifying(walk_all, job, hashing, list_store)
    candidates += walked.candidates
    # Folders of `repositories/` not read hide whole repositories: their manifests too.
    unknown = [Unknown(p.path, None, None, p.message) for p in problems] + walked.unknown
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
    unjudged: list[Finding] = []
    if options.shard is None:
        candidates += [c for c in unreferenced if c.kind != k.BLOB_UNREFERENCED]
        blob_candidates = {
            c.digest: c.details["bytes"]
            for c in unreferenced
            if c.kind == k.BLOB_UNREFERENCED and c.digest is not None
        }
        unjudged = unjudged_findings(unknown, blob_candidates)
        if not unjudged:
            candidates += [c for c in unreferenced if c.kind == k.BLOB_UNREFERENCED]
    else:
        scan_meta["shard"] = str(options.shard)
        scan_meta["referenced"] = list(referenced.distinct())
        scan_meta["unknown_references"] = [dataclasses.asdict(u) for u in unknown]
        if options.shard.index == 0:
            # The dedicated shard for the global blob check: its candidates, minus what the
            # other shards reference, are the unreferenced blobs (see merge_reports).
            scan_meta["blob_candidates"] = {
                c.digest: c.details["bytes"]
                for c in unreferenced
                if c.kind == k.BLOB_UNREFERENCED and c.digest is not None
            }
            # Stale temp files in blob folders without data are findings whoever references
            # the digest: this shard alone lists the blob store, so it reports them.
            candidates += [c for c in unreferenced if c.kind != k.BLOB_UNREFERENCED]
    candidates += [_read_problem(p) for p in blob_problems]
    candidates = one_per_link(candidates)
    report.extend(_confirmed(storage, candidates, options, executor.workers))
    report.extend(unjudged)
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
    walk_all: Callable[[WalkJob, bool], Walked],
    job: WalkJob,
    hasher: BackgroundHasher | None,
    list_store: bool,
) -> Walked:
    """The walk with every referenced blob's content verified.

    On a local filesystem another process (`hasher`) hashes the whole blob store while the
    walk runs without hashing (other cores instead of one interpreter). Only when it names
    blobs that did not hash to their digest (or could not be read) is the walk repeated,
    hashing just those, so findings, tags and re-checks are exactly those of hashing in the
    walk (storage with corrupt blobs pays for that second walk; clean storage, the usual
    case, does not). Without that process (a shard hashes only its own repositories' blobs,
    S3 has no local files, or it could not start) the walk hashes, as it does when the
    process does not finish.
    """
    verifying = dataclasses.replace(job, verify_content=True)
    if hasher is None:
        return walk_all(verifying, list_store)
    walked = walk_all(job, list_store)
    suspects = hasher.result()
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


class _Located(Protocol):
    """A candidate or a finding: what `one_per_link` needs of either."""

    @property
    def kind(self) -> str: ...

    @property
    def details(self) -> Mapping[str, Any]: ...


_L = TypeVar("_L", bound=_Located)


def one_per_link(items: Iterable[_L]) -> list[_L]:
    """One `link-outside-root` per link, the first met: every repository reading through a
    linked `blobs` folder stopped at the same link (in one scan, or in several shards)."""
    seen: set[str] = set()
    out = []
    for c in items:
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


def unjudged_findings(unknown: Sequence[Unknown], candidates: Mapping[str, int]) -> list[Finding]:
    """In place of `blob-unreferenced` for `candidates` (digest: bytes), the blobs no
    readable manifest names, when the references of some manifests are unknown: a
    `check-error` for each place that could not be used, naming its storage path. Saying
    "garbage collection will delete it" then would be a guess: the collector stops on a
    manifest it cannot read or unmarshal (distribution 2.8 and 3.x, "failed to mark"),
    deleting nothing, and one it can read may name any of these blobs."""
    if not unknown or not candidates:
        return []
    n, size = len(candidates), sum(candidates.values())
    withheld = (
        f"{n} blob(s) ({size} bytes) that no readable manifest names are not reported as "
        "unreferenced; `shipsure gc-check` says what garbage-collect would do"
    )
    out = []
    for u in sorted(unknown, key=lambda u: u.storage_path):
        if u.digest is not None:
            what = f"could not tell which blobs manifest {u.digest} references ({u.why})"
        else:
            what = f"could not read {u.storage_path} ({u.why}): the manifests there are unknown"
        out.append(
            Finding(
                kind=CHECK_ERROR,
                severity=k.severity(CHECK_ERROR, 0),
                message=f"{what}: {withheld}",
                repository=u.repository,
                digest=u.digest,
                path=(f"manifest {u.digest}",) if u.digest is not None else (),
                details={
                    "storage_path": u.storage_path,
                    "unreferenced_not_reported": n,
                    "unreferenced_not_reported_bytes": size,
                },
            )
        )
    return out


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
