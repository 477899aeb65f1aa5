"""Probe a whole registry: every repository of the catalog, every tag, each tree verified.

The walk is `verify`'s (`checks.verify.walk`), fed tag references in batches. Objects are
de-duplicated by digest per repository (a registry serves a blob through one repository's
link only, so the same digest in two repositories is two checks; registry-facts §3), and
the set of checked digests lives only while its repositories are being walked, so memory
tracks one batch of tags, not the registry.

What a pull would hit becomes a finding only when the registry said so (404, wrong bytes).
Anything that stopped us asking (5xx, timeouts, a restart, refused auth) is "could not
check" (`check-error`) and counts against coverage, never as missing. Before a problem is
reported its tag is walked again: a tag deleted or moved while the probe ran is not a
broken image.

Probe states are listed once in `STATES`; JSON reports carry them under `probe`.
"""

from __future__ import annotations

import fnmatch
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shipsure.checks.scan.shard import Shard
from shipsure.checks.verify import TAG_NOT_FOUND, CheckedKey, VerifyOptions, walk
from shipsure.errors import InvalidReferenceError
from shipsure.findings import CHECK_ERROR, Finding, Report, Severity
from shipsure.model import Descriptor, Digest, Reference, is_repository_name
from shipsure.registry.interface import (
    AuthError,
    BlobRead,
    HeadResult,
    ManifestResponse,
    NotFoundError,
    ProtocolError,
    Registry,
    RegistryError,
)

# Probe states: conditions of a run, besides the integrity findings of `verify`'s kinds.
# Each is a `check-error` finding (exit code 3, never "missing") with `details.state`, and
# a metric (report/probe_metrics.py) that an alert rule in deploy/ watches.
CATALOG_INACCESSIBLE = "catalog-inaccessible"
AUTH_FAILING = "auth-failing"
COVERAGE_PARTIAL = "coverage-partial"
PROBE_STALE = "probe-stale"

STATES: dict[str, str] = {
    CATALOG_INACCESSIBLE: "the catalog could not be listed (in full): repositories may be "
    "missing from the run",
    AUTH_FAILING: "the registry refused our credentials (401/403) for the catalog, a "
    "repository or an object",
    COVERAGE_PARTIAL: "repositories or tags that could not be checked (unavailable, refused, "
    "unusable answers), with why",
    PROBE_STALE: "no complete run within the window (seen by the alert on "
    "shipsure_probe_last_complete_run_timestamp_seconds)",
}

DEFAULT_BATCH_TAGS = 500
DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ProbeOptions:
    """What to probe and how hard.

    `repositories` are fnmatch globs (`team/*`); `tag_pattern` a regex a tag must match
    (`re.search`); `max_tags` keeps the N greatest tags of a repository in natural version
    order (`1.10` after `1.9`), because the distribution API records no push time.
    `deep_sample` is a percentage of blobs re-hashed per run (see `deep_sample_picker`);
    `run_number` rotates it. `requests_per_second` of 0 means no limit.
    """

    repositories: tuple[str, ...] = ()
    tag_pattern: re.Pattern[str] | None = None
    max_tags: int | None = None
    deep: bool = False
    deep_sample: float = 0.0
    run_number: int = 0
    shard: Shard = field(default_factory=lambda: Shard(0, 1))
    workers: int = 16
    requests_per_second: float = 0.0
    page_size: int = DEFAULT_PAGE_SIZE
    batch_tags: int = DEFAULT_BATCH_TAGS
    referrers: bool = True
    # Blobs re-hashed on every run whatever the sample: those the previous run found
    # corrupted, so that a sampled run never calls them recovered without looking.
    deep_digests: frozenset[str] = frozenset()
    # Repositories whose tags are named in `probe.remembered` (for --state to tell recovered
    # from not checked); others are only counted, to keep memory bounded.
    remember_tags_of: frozenset[str] = frozenset()


def deep_sample_picker(percent: float, run_number: int) -> Callable[[Digest], bool] | None:
    """Pick the blobs to re-hash this run: blobs fall into ceil(100 / percent) buckets by
    digest, and run `run_number` takes bucket `run_number % buckets`. So each run re-hashes
    about `percent` % of the blobs and every blob is re-hashed within `buckets` runs."""
    if percent <= 0:
        return None
    buckets = max(1, math.ceil(100.0 / percent))
    bucket = run_number % buckets
    return lambda digest: int(digest.hex[:8], 16) % buckets == bucket


def _deep_for(options: ProbeOptions) -> Callable[[Digest], bool] | None:
    sample = deep_sample_picker(options.deep_sample, options.run_number)
    known = options.deep_digests
    if not known:
        return sample
    if sample is None:
        return lambda digest: str(digest) in known
    return lambda digest: str(digest) in known or sample(digest)


def deep_sample_rotation(percent: float) -> int:
    """Runs after which every blob has been re-hashed at least once."""
    return max(1, math.ceil(100.0 / percent)) if percent > 0 else 0


class CountingRegistry:
    """A `Registry` that counts requests by method and holds them to a rate (token bucket).

    Counts are what the probe asked, not retries below the seam.
    """

    def __init__(self, inner: Registry, requests_per_second: float = 0.0) -> None:
        self.inner = inner
        self.rate = requests_per_second
        self.counts: dict[str, int] = {"GET": 0, "HEAD": 0}
        self._lock = threading.Lock()
        self._next_slot = time.monotonic()

    def _take(self, method: str) -> None:
        with self._lock:
            self.counts[method] += 1
            if self.rate <= 0:
                return
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.rate
        if slot > now:
            time.sleep(slot - now)

    @property
    def host(self) -> str:
        return self.inner.host

    def ping(self) -> None:
        self._take("GET")
        self.inner.ping()

    def get_manifest(self, repository: str, reference: str) -> ManifestResponse:
        self._take("GET")
        return self.inner.get_manifest(repository, reference)

    def head_manifest(self, repository: str, reference: str) -> HeadResult:
        self._take("HEAD")
        return self.inner.head_manifest(repository, reference)

    def head_blob(self, repository: str, digest: Digest) -> HeadResult:
        self._take("HEAD")
        return self.inner.head_blob(repository, digest)

    def read_blob(self, repository: str, digest: Digest, limit: int) -> BlobRead:
        self._take("GET")
        return self.inner.read_blob(repository, digest, limit)

    def catalog(self, page_size: int | None = 1000) -> Iterator[str]:
        # Pages are counted as they are fetched, one per call of the inner generator.
        self._take("GET")
        return self.inner.catalog(page_size)

    def tags(self, repository: str) -> Iterator[str]:
        self._take("GET")
        return self.inner.tags(repository)

    def referrers(
        self, repository: str, digest: Digest, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        self._take("GET")
        return self.inner.referrers(repository, digest, artifact_type)

    def close(self) -> None:
        self.inner.close()


_NATURAL_RE = re.compile(r"(\d+)")


_VERSION_TAG_RE = re.compile(r"[vV]?[0-9]")
# cosign and the OCI referrers tag schema: `sha256-<hex>` with `.sig`, `.att`, `.sbom`...
_REFERRER_TAG_RE = re.compile(r"sha256-[0-9a-f]{64}(?:\.[A-Za-z0-9_.-]*)?")


def natural_key(tag: str) -> tuple[int, tuple[tuple[int, int | str], ...]]:
    """Version-aware order: `1.9` < `1.10`, digits compared as numbers; versions (`1.2`,
    `v2.0`) above other names (`latest`, `main`), and signature/attestation tags
    (`sha256-<hex>.sig`) below all. Without the ranks, any name sorted above every number,
    and `--max-tags 20` of a signed image took its signature tags instead of its releases.
    """
    if _REFERRER_TAG_RE.fullmatch(tag):
        rank = 0
    elif _VERSION_TAG_RE.match(tag):
        rank = 2
    else:
        rank = 1
    parts = tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _NATURAL_RE.split(tag) if part
    )
    return rank, parts


def select_tags(tags: Sequence[str], options: ProbeOptions) -> list[str]:
    """The tags a run checks: those matching `tag_pattern`, then the `max_tags` greatest."""
    kept = [t for t in tags if options.tag_pattern is None or options.tag_pattern.search(t)]
    if options.max_tags is not None and len(kept) > options.max_tags:
        kept = sorted(kept, key=natural_key)[-options.max_tags :]
    return kept


def repository_selected(name: str, options: ProbeOptions) -> bool:
    if not options.shard.owns(name):
        return False
    return not options.repositories or any(
        fnmatch.fnmatchcase(name, glob) for glob in options.repositories
    )


@dataclass
class _Coverage:
    """Counts of one run; `unchecked` names repositories with tags we could not check."""

    repositories: int = 0
    repositories_unchecked: int = 0
    tags: int = 0
    tags_checked: int = 0
    unchecked: dict[str, dict[str, Any]] = field(default_factory=dict)
    # For `remember_tags_of` repositories: {"clean": [tags], "unchecked": [tags]}.
    remembered: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    catalog_accessible: bool = True
    catalog_complete: bool = True
    auth_accepted: bool = True
    # `--repo` globs that matched some catalog name (in any shard): the others are typos
    # or repositories not pushed yet, which a run must not pass over in silence.
    globs_matched: set[str] = field(default_factory=set)
    # `--repo` names probed without the catalog whose tags list answered NAME_UNKNOWN: the
    # same typo or unpushed repository, told by the registry instead of the catalog.
    repositories_unknown: set[str] = field(default_factory=set)

    def miss(self, repository: str, tags: int, reason: str, *, whole: bool = False) -> None:
        entry = self.unchecked.setdefault(repository, {"tags": 0, "reasons": []})
        entry["tags"] += tags
        if reason not in entry["reasons"]:
            entry["reasons"].append(reason)
        if whole:
            entry["whole_repository"] = True
            self.repositories_unchecked += 1


def probe(
    registry: Registry,
    options: ProbeOptions | None = None,
    *,
    clock: Callable[[], float] = time.time,
    on_progress: Callable[[str], None] | None = None,
) -> Report:
    """Probe every selected repository and tag of `registry`; one report of all problems.

    The report's `meta["probe"]` holds the run's states and coverage (see `STATES`);
    `meta["probe"]["requests"]` counts requests by method.
    """
    opts = options or ProbeOptions()
    started = clock()
    counting = CountingRegistry(registry, opts.requests_per_second)
    report = Report(command="probe")
    coverage = _Coverage()
    _Probe(counting, opts, report, coverage, on_progress).run()
    finished = clock()
    complete = (
        coverage.catalog_accessible
        and coverage.catalog_complete
        and coverage.auth_accepted
        and not coverage.unchecked
    )
    report.meta["probe"] = {
        "registry": registry.host,
        "shard": str(opts.shard),
        "started_timestamp": round(started, 3),
        "finished_timestamp": round(finished, 3),
        "duration_seconds": round(finished - started, 3),
        "complete": complete,
        "catalog_accessible": coverage.catalog_accessible and coverage.catalog_complete,
        "auth_accepted": coverage.auth_accepted,
        "repositories": coverage.repositories,
        "repositories_unchecked": coverage.repositories_unchecked,
        "tags": coverage.tags,
        "tags_checked": coverage.tags_checked,
        "unchecked": [{"repository": r, **v} for r, v in sorted(coverage.unchecked.items())],
        # Only known when the whole catalog was read.
        "repository_globs_unmatched": [
            g for g in opts.repositories if g not in coverage.globs_matched
        ]
        if coverage.catalog_accessible and coverage.catalog_complete
        else [],
        "repositories_unknown": sorted(coverage.repositories_unknown),
        "remembered": coverage.remembered,
        "deep": opts.deep,
        "deep_sample_percent": opts.deep_sample,
        "deep_sample_rotation_runs": deep_sample_rotation(opts.deep_sample),
        "requests": dict(counting.counts),
    }
    return report


class _Probe:
    def __init__(
        self,
        registry: CountingRegistry,
        options: ProbeOptions,
        report: Report,
        coverage: _Coverage,
        on_progress: Callable[[str], None] | None,
    ) -> None:
        self.registry = registry
        self.options = options
        self.report = report
        self.coverage = coverage
        self.on_progress = on_progress
        self.verify_options = VerifyOptions(
            deep=options.deep,
            referrers=options.referrers,
            workers=max(1, options.workers),
            deep_for=_deep_for(options),
        )
        # `--repo` names probed without the catalog (see _named_repositories).
        self._named: set[str] = set()

    def _registry_for(self, host: str) -> Registry:
        return self.registry

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.registry.ping()
        except RegistryError as exc:
            self._state_error(CATALOG_INACCESSIBLE, exc, "the registry API (/v2/)")
            self.coverage.catalog_accessible = False
            return
        batch: list[tuple[str, list[str]]] = []
        batch_size = 0
        # Tags are listed a few repositories ahead, concurrently, while batches are walked.
        window = max(1, min(self.options.workers, 32))
        with ThreadPoolExecutor(max_workers=window) as lister:
            pending: deque[tuple[str, Future[list[str] | RegistryError]]] = deque()
            for name in self._repositories():
                pending.append((name, lister.submit(self._list_tags, name)))
                if len(pending) >= window:
                    batch_size = self._take(pending.popleft(), batch, batch_size)
            while pending:
                batch_size = self._take(pending.popleft(), batch, batch_size)
        if batch:
            self._walk_batch(batch)

    def _take(
        self,
        item: tuple[str, Future[list[str] | RegistryError]],
        batch: list[tuple[str, list[str]]],
        batch_size: int,
    ) -> int:
        name, future = item
        tags = future.result()
        if isinstance(tags, NotFoundError):
            # Only for a name the user gave (see _list_tags): said, like a --repo that
            # matches nothing in the catalog, never counted as a repository of 0 tags.
            self.coverage.repositories_unknown.add(name)
            self.coverage.repositories -= 1
            return batch_size
        if isinstance(tags, RegistryError):
            self._repository_error(name, tags)
            return batch_size
        self.coverage.tags += len(tags)
        if name in self._named:
            self.coverage.globs_matched.add(name)  # found without the catalog
        if name in self.options.remember_tags_of:
            self.coverage.remembered.setdefault(name, {"clean": [], "unchecked": []})
        if not tags:
            return batch_size
        if len(tags) >= self.options.batch_tags:
            # A repository larger than a batch is walked alone, in chunks sharing one set
            # of checked digests.
            checked: set[CheckedKey] = set()
            for start in range(0, len(tags), self.options.batch_tags):
                self._walk_batch([(name, tags[start : start + self.options.batch_tags])], checked)
            return batch_size
        batch.append((name, tags))
        batch_size += len(tags)
        if batch_size >= self.options.batch_tags:
            self._walk_batch(batch)
            batch.clear()
            return 0
        return batch_size

    def _repositories(self) -> Iterator[str]:
        """Selected repository names from the catalog, following its pagination.

        A registry that refuses `n` (400) is asked again without it; one that serves a
        smaller page than asked is followed by its `Link` header all the same.
        """
        page_size: int | None = self.options.page_size
        seen = 0
        previous: str | None = None
        while True:
            try:
                for name in self.registry.catalog(page_size):
                    seen += 1
                    if name == previous:
                        # A page that starts again at its `last` (a proxy that includes it):
                        # walked once. Distribution lists names sorted, so a repeat is
                        # adjacent, and no set of every name is kept.
                        continue
                    previous = name
                    for glob in self.options.repositories:
                        if glob not in self.coverage.globs_matched and fnmatch.fnmatchcase(
                            name, glob
                        ):
                            self.coverage.globs_matched.add(glob)
                    if repository_selected(name, self.options):
                        self.coverage.repositories += 1
                        yield name
                return
            except ProtocolError as exc:
                if seen == 0 and page_size is not None and exc.status == 400:
                    page_size = None
                    continue
                self._catalog_failed(exc)
            except RegistryError as exc:
                self._catalog_failed(exc)
            yield from self._named_repositories(listed_before=previous)
            return

    def _named_repositories(self, listed_before: str | None) -> Iterator[str]:
        """Without the catalog (Docker Hub, GHCR, Harbor for most users refuse it), the
        `--repo` values that are plain names, not globs, are still probed: the user named
        them, and their tags list says whether they exist. Names the catalog listed before
        it failed (it lists them sorted) were probed already."""
        for name in dict.fromkeys(self.options.repositories):
            if any(c in name for c in "*?[") or not is_repository_name(name):
                continue
            if listed_before is not None and name <= listed_before:
                continue
            self._named.add(name)
            if self.options.shard.owns(name):
                self.coverage.repositories += 1
                yield name

    def _catalog_failed(self, exc: RegistryError) -> None:
        self.coverage.catalog_complete = False
        self._state_error(CATALOG_INACCESSIBLE, exc, "the catalog")

    def _list_tags(self, repository: str) -> list[str] | RegistryError:
        """Run on a lister thread: the selected tags, or why they could not be listed."""
        try:
            tags = list(self.registry.tags(repository))
        except InvalidReferenceError:
            # The catalog's own answer named it: a broken or hostile registry, not a typo of
            # the user's; the other repositories are still probed.
            return ProtocolError(f"the catalog lists an invalid repository name {repository!r}")
        except NotFoundError as exc:
            if repository in self._named:
                return exc  # the user named it, and the registry does not know it
            # Deleted since the catalog was read (or the catalog lists a repository whose
            # tags are all gone): nothing a pull could ask for.
            return []
        except RegistryError as exc:
            return exc
        return select_tags(tags, self.options)

    def _repository_error(self, repository: str, exc: RegistryError) -> None:
        state = AUTH_FAILING if isinstance(exc, AuthError) else COVERAGE_PARTIAL
        if isinstance(exc, AuthError):
            self.coverage.auth_accepted = False
        reason = _reason(isinstance(exc, AuthError), isinstance(exc, ProtocolError), exc.status)
        self.coverage.miss(repository, 0, reason, whole=True)
        if repository in self.options.remember_tags_of:
            self.coverage.remembered[repository] = {"clean": [], "unchecked": ["*"]}
        self.report.add(
            Finding(
                kind=CHECK_ERROR,
                severity=Severity.WARNING,
                message=f"could not list the tags of {repository}: {exc}",
                repository=repository,
                details={"state": state, "status": exc.status, "error_code": exc.code},
            )
        )

    def _state_error(self, state: str, exc: RegistryError, what: str) -> None:
        if isinstance(exc, AuthError):
            self.coverage.auth_accepted = False
            state = AUTH_FAILING
        self.report.add(
            Finding(
                kind=CHECK_ERROR,
                severity=Severity.WARNING,
                message=f"could not read {what}: {exc}",
                details={"state": state, "status": exc.status, "error_code": exc.code},
            )
        )

    # -- walking batches -----------------------------------------------------------------

    def _walk_batch(
        self, batch: Sequence[tuple[str, list[str]]], checked: set[CheckedKey] | None = None
    ) -> None:
        host = self.registry.host
        references = [Reference(host, repo, tag) for repo, tags in batch for tag in tags]
        found = Report(command="probe")
        shared = set() if checked is None else checked
        walk(references, self._registry_for, self.verify_options, found, shared)
        problems = [f for f in found.findings if not f.is_check_error]
        if problems:
            problems = self._confirm(problems)
        errors = found.check_errors
        for name, count in found.checked.items():
            if name != "references":
                self.report.count(name, count)
        self.report.count("tags", len(references))
        unchecked: dict[str, set[str]] = {}
        for finding in errors:
            if finding.details.get("status") in (401, 403):
                self.coverage.auth_accepted = False
            for tag in _tags_of(finding):
                unchecked.setdefault(finding.repository or "", set()).add(tag)
        for repo, tags in batch:
            bad = unchecked.get(repo, set())
            if bad:
                reasons = sorted({_error_reason(f) for f in errors if f.repository == repo})
                for reason in reasons:
                    self.coverage.miss(repo, 0, reason)
                self.coverage.unchecked[repo]["tags"] += len(bad)
            self.coverage.tags_checked += len(tags) - len(bad)
            if repo in self.options.remember_tags_of:
                broken = {t for f in problems if f.repository == repo for t in _tags_of(f)}
                entry = self.coverage.remembered.setdefault(repo, {"clean": [], "unchecked": []})
                entry["clean"] += [t for t in tags if t not in bad and t not in broken]
                entry["unchecked"] += sorted(bad)
        self.report.extend(problems)
        self.report.extend(_with_state(f, COVERAGE_PARTIAL) for f in errors)
        if self.on_progress is not None:
            self.on_progress(
                f"{self.coverage.tags_checked}/{self.coverage.tags} tags, "
                f"{len(self.report.problems)} problem(s)"
            )

    def _confirm(self, problems: list[Finding]) -> list[Finding]:
        """Walk the tags of `problems` again and keep what is still there.

        A tag deleted or re-pushed between the listing and the walk is not a broken image.
        A second answer that could not be had (registry gone meanwhile) keeps the first:
        the registry did say the object was missing or wrong.
        """
        host = self.registry.host
        tags = sorted({(f.repository or "", t) for f in problems for t in _tags_of(f)})
        again = Report(command="probe")
        walk(
            [Reference(host, repo, tag) for repo, tag in tags],
            self._registry_for,
            self.verify_options,
            again,
            set(),
        )
        seen_again = {(f.kind, f.repository, f.digest) for f in again.problems}
        uncertain = {f.repository for f in again.check_errors}
        listed: dict[str, set[str] | None] = {}
        kept = []
        for finding in problems:
            repo = finding.repository or ""
            if finding.kind == TAG_NOT_FOUND:
                # distribution lists a tag whose data is gone (a dangling tag) but not one
                # that was deleted: only a listed tag is broken.
                if repo not in listed:
                    listed[repo] = self._tag_set(repo)
                names = listed[repo]
                if names is not None and not set(_tags_of(finding)) & names:
                    continue
            key = (finding.kind, finding.repository, finding.digest)
            if key in seen_again or repo in uncertain:
                kept.append(finding)
        return kept

    def _tag_set(self, repository: str) -> set[str] | None:
        try:
            return set(self.registry.tags(repository))
        except NotFoundError:
            return set()
        except RegistryError:
            return None


def _tags_of(finding: Finding) -> list[str]:
    """The tags a finding's paths start from (`tag latest -> ...`)."""
    paths = [finding.path[0]] if finding.path else []
    paths += [str(p).split(" -> ", 1)[0] for p in finding.details.get("also_referenced_by", [])]
    if not paths and finding.reference:
        paths = [f"tag {finding.reference.rsplit(':', 1)[-1]}"]
    return sorted({p[4:] for p in paths if p.startswith("tag ")})


def _reason(refused: bool, unusable: bool, status: object) -> str:
    """Why tags could not be checked, as coverage lists it."""
    if refused:
        return "access refused"
    what = "unusable answer" if unusable else "registry unavailable"
    return f"{what} (HTTP {status})" if status else what


def _error_reason(finding: Finding) -> str:
    status = finding.details.get("status")
    return _reason(status in (401, 403), "unusable answer" in finding.message, status)


def _with_state(finding: Finding, state: str) -> Finding:
    if "state" in finding.details:
        return finding
    details = dict(finding.details)
    details["state"] = AUTH_FAILING if details.get("status") in (401, 403) else state
    return Finding(
        kind=finding.kind,
        severity=finding.severity,
        message=finding.message,
        repository=finding.repository,
        reference=finding.reference,
        digest=finding.digest,
        path=finding.path,
        details=details,
    )
