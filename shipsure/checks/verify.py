"""Verify pushed images end to end: reference -> index -> children -> config -> layers.

The walk asks the registry only through the `Registry` seam. Independent requests run
concurrently on a thread pool (the client bounds concurrency itself), so wall time tracks
the tree's depth in round trips, not its blob count. Every object is checked once per
repository; every problem is reported, not only the first, each with the path from the
reference to it and everything else that refers to it.

By default blobs are checked with HEAD. `deep` GETs every blob and re-hashes it, which
catches corrupted bytes behind a HEAD 200 and short bodies from a stale blob cache.
Manifests are always fetched (their bodies are needed to walk) and always re-hashed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shipsure import mediatypes as mt
from shipsure.errors import (
    BadInputError,
    InvalidReferenceError,
    ManifestError,
    ShipsureError,
    UnsupportedManifestError,
)
from shipsure.findings import CHECK_ERROR, Finding, Report, Severity, kind
from shipsure.model import (
    Descriptor,
    Digest,
    ImageIndex,
    ImageManifest,
    Manifest,
    Platform,
    Reference,
    contents,
    parse_manifest,
)
from shipsure.registry.interface import (
    AuthError,
    NotFoundError,
    ProtocolError,
    Registry,
    RegistryError,
    UnavailableError,
)

# Finding kinds `verify` produces: ids, meanings and severities in `findings.KINDS`.
TAG_NOT_FOUND = kind("tag-not-found").id
REPOSITORY_NOT_FOUND = kind("repository-not-found").id
MANIFEST_MISSING = kind("manifest-missing").id
MANIFEST_DIGEST_MISMATCH = kind("manifest-digest-mismatch").id
MANIFEST_SIZE_MISMATCH = kind("manifest-size-mismatch").id
MANIFEST_INVALID = kind("manifest-invalid").id
MANIFEST_UNSUPPORTED = kind("manifest-unsupported").id
DIGEST_HEADER_MISMATCH = kind("digest-header-mismatch").id
PLATFORM_NOT_FOUND = kind("platform-not-found").id
BLOB_MISSING = kind("blob-missing").id
BLOB_DIGEST_MISMATCH = kind("blob-digest-mismatch").id
BLOB_SIZE_MISMATCH = kind("blob-size-mismatch").id
BLOB_TRUNCATED = kind("blob-truncated").id
TAG_MOVED = kind("tag-moved").id


@dataclass(frozen=True)
class VerifyOptions:
    deep: bool = False
    platforms: tuple[Platform, ...] = ()
    referrers: bool = True
    workers: int = 16
    # Re-hash only the blobs this picks (`probe --deep-sample`); `deep` re-hashes every one.
    deep_for: Callable[[Digest], bool] | None = None


RegistryFor = Callable[[str], Registry]


@dataclass(frozen=True)
class _Node:
    """One object to check: a manifest (by tag or digest) or a blob, in one repository."""

    registry: str
    repository: str
    is_manifest: bool
    identifier: str  # tag or digest string
    role: str  # how it shows in a path: "index", "linux/arm64", "config", "layer 2", ...
    descriptor: Descriptor | None = None  # what the parent said it is
    reference: str = ""  # the user's reference this walk started from

    @property
    def key(self) -> tuple[str, str, bool, str]:
        return (self.registry, self.repository, self.is_manifest, self.identifier)

    def label(self) -> str:
        return f"{self.role} {self.identifier}"


@dataclass
class _Problem:
    kind: str
    message: str
    digest: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return kind(self.kind).severity


@dataclass
class _Outcome:
    problems: list[_Problem] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)
    counted: str = ""  # "manifests" or "blobs" when the object was actually checked
    # --platform filters and the index children they matched (as containerd normalises).
    platform_matches: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Seen:
    node: _Node
    paths: list[tuple[str, ...]]
    outcome: _Outcome | None = None


def verify(
    references: Sequence[Reference],
    registry_for: RegistryFor,
    options: VerifyOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Walk every reference and return one report of all problems found."""
    opts = options or VerifyOptions()
    report = Report(command="verify")
    report.meta["references"] = [str(r) for r in references]
    report.meta["deep"] = opts.deep
    walker = _Walker(registry_for, opts, report, on_progress)
    walker.run(references)
    return report


# An object already checked: (repository, is_manifest, digest). Tags are never recorded.
CheckedKey = tuple[str, bool, str]


def walk(
    references: Sequence[Reference],
    registry_for: RegistryFor,
    options: VerifyOptions,
    report: Report,
    checked: set[CheckedKey],
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Walk `references` as `verify` does, adding findings and counts to `report`.

    `checked` carries de-duplication across calls: objects in it are not requested again,
    and every object this call checks (by digest) is added to it. A caller walking a
    registry in batches passes one set per repository and drops it when the repository
    is done, so memory tracks one batch, not the registry. A problem is reported by the
    call that first meets the object.
    """
    walker = _Walker(registry_for, options, report, on_progress, checked)
    walker.run(references)


class _Walker:
    def __init__(
        self,
        registry_for: RegistryFor,
        options: VerifyOptions,
        report: Report,
        on_progress: Callable[[int, int], None] | None,
        checked: set[CheckedKey] | None = None,
    ) -> None:
        self.registry_for = registry_for
        self.checked = checked
        self.options = options
        self.report = report
        self.on_progress = on_progress
        self.seen: dict[tuple[str, str, bool, str], _Seen] = {}
        # Finished checks arrive here; the walk thread alone touches `seen` and the report.
        self.finished: queue.SimpleQueue[tuple[Future[_Outcome], _Seen]] = queue.SimpleQueue()
        self.outstanding = 0
        self.side_checks: list[_Seen] = []
        self.api_lock = threading.Lock()
        self.api_answers: dict[str, RegistryError | None] = {}

    def run(self, references: Sequence[Reference]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self.options.workers)) as pool:
            self.pool = pool
            for ref in references:
                self.report.count("references")
                role = "tag" if ref.digest is None else "digest"
                node = _Node(
                    registry=ref.registry,
                    repository=ref.repository,
                    is_manifest=True,
                    identifier=ref.identifier,
                    role=role,
                    reference=str(ref),
                )
                self._submit(node, ())
                if ref.digest is not None and ref.tag:
                    # Docker pulls by the digest and ignores the tag; say when they differ.
                    tag_node = _Node(
                        ref.registry, ref.repository, True, ref.tag, "tag", reference=str(ref)
                    )
                    side = _Seen(node=tag_node, paths=[(tag_node.label(),)])
                    self.side_checks.append(side)
                    self._watch(pool.submit(self._check_tag_moved, ref), side)
            self._drain()
        for state in [*self.seen.values(), *self.side_checks]:
            self._emit(state)
        if self.checked is not None:
            # Objects that could not be checked stay out, so a later call asks again.
            self.checked.update(
                (s.node.repository, s.node.is_manifest, s.node.identifier)
                for s in self.seen.values()
                if s.node.role != "tag"
                and s.outcome is not None
                and not any(p.kind == CHECK_ERROR for p in s.outcome.problems)
            )

    def _submit(self, node: _Node, parent_path: tuple[str, ...]) -> None:
        path = (*parent_path, node.label())
        state = self.seen.get(node.key)
        if state is not None:
            state.paths.append(path)
            return
        if (
            self.checked is not None
            and (node.repository, node.is_manifest, node.identifier) in self.checked
        ):
            return
        state = _Seen(node=node, paths=[path])
        self.seen[node.key] = state
        self._watch(self.pool.submit(self._check, node), state)

    def _watch(self, future: Future[_Outcome], state: _Seen) -> None:
        self.outstanding += 1
        future.add_done_callback(lambda f: self.finished.put((f, state)))

    def _drain(self) -> None:
        done_count = 0
        while self.outstanding:
            future, state = self.finished.get()
            self.outstanding -= 1
            done_count += 1
            outcome = future.result()
            state.outcome = outcome
            if outcome.counted:
                self.report.count(outcome.counted)
            if outcome.platform_matches:
                self.report.meta.setdefault("platform_matches", []).extend(outcome.platform_matches)
            for child in outcome.children:
                self._submit(child, state.paths[0])
            if self.on_progress is not None:
                self.on_progress(done_count, done_count + self.outstanding)

    def _emit(self, state: _Seen) -> None:
        if state.outcome is None:
            return
        others = [" -> ".join(p) for p in state.paths[1:]]
        for problem in state.outcome.problems:
            if others:
                problem.details["also_referenced_by"] = others
            finding = _finding(problem, state.node, state.paths[0])
            self.report.add(finding)

    # --- the checks, run on worker threads ------------------------------------------

    def _check(self, node: _Node) -> _Outcome:
        try:
            registry = self.registry_for(node.registry)
            if node.is_manifest:
                return self._check_manifest(registry, node)
            return self._check_blob(registry, node)
        except RegistryError as exc:
            if isinstance(exc, NotFoundError) and exc.code is None and node.is_manifest:
                # distribution answers a missing manifest with a JSON error code; a bare 404
                # may come from a server that is no registry at all (a web server on the
                # port, a proxy's error page): then nothing was checked.
                refused = self._api_refused(node.registry)
                if refused is not None:
                    digest = None if node.role == "tag" else node.identifier
                    message = f"could not check (no registry API): {refused}"
                    return _Outcome(problems=[_Problem(CHECK_ERROR, message, digest)])
            return _Outcome(problems=[_registry_problem(node, exc)])
        except InvalidReferenceError as exc:
            # The user's references were parsed before the walk; a name refused here came
            # from the registry (a tags list or catalog holding `../x`): that object could
            # not be checked, the rest of the walk goes on.
            digest = None if node.role == "tag" else node.identifier
            return _Outcome(problems=[_Problem(CHECK_ERROR, f"could not check: {exc}", digest)])
        except BadInputError:
            # The user's own input is bad (a malformed docker config.json, read on the
            # first challenge): no object can be checked with it; the run stops, exit 2.
            raise
        except ShipsureError as exc:
            # Anything else shipsure raises on purpose (a malformed header, say) means this
            # object could not be checked; the walk goes on with the rest.
            digest = None if node.role == "tag" else node.identifier
            problem = _Problem(CHECK_ERROR, f"could not check: {exc}", digest)
            return _Outcome(problems=[problem])

    def _api_refused(self, registry_name: str) -> RegistryError | None:
        """Why `GET /v2/` of this registry fails (asked once per walk), or None when it
        answers as a registry does (or only refuses credentials: a 404 is still a 404)."""
        with self.api_lock:
            if registry_name not in self.api_answers:
                answer: RegistryError | None = None
                try:
                    self.registry_for(registry_name).ping()
                except (UnavailableError, ProtocolError) as exc:
                    answer = exc
                except RegistryError:
                    pass
                self.api_answers[registry_name] = answer
            return self.api_answers[registry_name]

    def _check_manifest(self, registry: Registry, node: _Node) -> _Outcome:
        response = registry.get_manifest(node.repository, node.identifier)
        raw = response.raw
        outcome = _Outcome(counted="manifests")
        expected = _expected_digest(node)
        algorithm = expected.algorithm if expected else "sha256"
        actual = Digest.of(raw, algorithm)
        where = expected or actual
        if expected is not None and actual != expected:
            # OCI distribution-spec: "the client SHOULD verify the returned manifest
            # matches the requested digest".
            outcome.problems.append(
                _Problem(
                    MANIFEST_DIGEST_MISMATCH,
                    f"manifest bytes hash to {actual}, not the requested digest",
                    str(expected),
                    {"actual_digest": str(actual)},
                )
            )
            return outcome
        header = response.digest_header
        if header and header.startswith(f"{algorithm}:") and header != str(actual):
            outcome.problems.append(
                _Problem(
                    DIGEST_HEADER_MISMATCH,
                    f"registry sent Docker-Content-Digest {header} for bytes that hash to {actual}",
                    str(where),
                    {"digest_header": header},
                )
            )
        if node.descriptor is not None and node.descriptor.size != len(raw):
            outcome.problems.append(
                _Problem(
                    MANIFEST_SIZE_MISMATCH,
                    f"manifest is {len(raw)} bytes; its parent says {node.descriptor.size}",
                    str(where),
                    {"expected_size": node.descriptor.size, "actual_size": len(raw)},
                )
            )
        declared = node.descriptor.media_type if node.descriptor else None
        try:
            manifest = parse_manifest(raw, declared or response.media_type, algorithm=algorithm)
        except UnsupportedManifestError as exc:
            outcome.problems.append(_Problem(MANIFEST_UNSUPPORTED, str(exc), str(where)))
            return outcome
        except ManifestError as exc:
            outcome.problems.append(_Problem(MANIFEST_INVALID, str(exc), str(where)))
            return outcome
        outcome.children.extend(self._children(node, manifest, outcome))
        if self.options.referrers:
            outcome.children.extend(self._referrers(registry, node, manifest.digest))
        return outcome

    def _children(self, node: _Node, manifest: Manifest, outcome: _Outcome) -> list[_Node]:
        def child(desc: Descriptor, role: str, *, is_manifest: bool) -> _Node:
            return _Node(
                registry=node.registry,
                repository=node.repository,
                is_manifest=is_manifest,
                identifier=str(desc.digest),
                role=role,
                descriptor=desc,
                reference=node.reference,
            )

        # What a pull asks this registry for (model.contents): foreign layers live at their
        # urls, and index entries with a blob media type are checked as blobs.
        found = contents(manifest)
        pulled = {id(d) for d in found.pull}
        if isinstance(manifest, ImageManifest):
            nodes = [child(manifest.config, "config", is_manifest=False)]
            nodes += [
                child(layer, f"layer {i}", is_manifest=False)
                for i, layer in enumerate(manifest.layers)
                if id(layer) in pulled
            ]
            return nodes
        kept = [d for d in _filter_platforms(manifest, self.options.platforms) if id(d) in pulled]
        for wanted_platform in self.options.platforms:
            outcome.platform_matches += [
                {"platform": str(wanted_platform), "child": str(d.platform)}
                | {"digest": str(d.digest)}
                for d in kept
                if d.platform is not None
                and not d.is_attestation
                and wanted_platform.matches(d.platform)
            ]
        if self.options.platforms and not any(
            d.platform is not None and not d.is_attestation for d in kept
        ):
            wanted = ", ".join(str(p) for p in self.options.platforms)
            listed = sorted(
                {str(d.platform) for d in manifest.manifests if d.platform and not d.is_attestation}
            )
            outcome.problems.append(
                _Problem(
                    PLATFORM_NOT_FOUND,
                    f"index has no child for platform {wanted}"
                    + (f" (it lists {', '.join(listed)})" if listed else ""),
                    str(manifest.digest),
                    {"platforms_listed": listed},
                )
            )
        children = {id(d) for d in found.children}
        return [child(d, _role(d), is_manifest=id(d) in children) for d in kept]

    def _referrers(self, registry: Registry, node: _Node, digest: Digest) -> list[_Node]:
        try:
            found = registry.referrers(node.repository, digest)
        except NotFoundError:
            return []
        except RegistryError:
            # Referrers are extra: failing to list them is not a problem of the image.
            return []
        return [
            _Node(
                registry=node.registry,
                repository=node.repository,
                is_manifest=True,
                identifier=str(d.digest),
                role=f"referrer {d.artifact_type or d.media_type}",
                descriptor=d,
                reference=node.reference,
            )
            for d in found or []
        ]

    def _check_blob(self, registry: Registry, node: _Node) -> _Outcome:
        assert node.descriptor is not None
        desc = node.descriptor
        outcome = _Outcome(counted="blobs")
        deep_for = self.options.deep_for
        if not (self.options.deep or (deep_for is not None and deep_for(desc.digest))):
            try:
                size = registry.head_blob(node.repository, desc.digest).size
            except RegistryError as exc:
                # A HEAD answer has no body, so no registry error code; and some registries
                # and proxies refuse HEAD on blobs (405, 501, or 403 for HEAD alone) while
                # GET works. Confirm with a GET, which is what a pull does: it raises with
                # the code, or serves the blob (read no further than its first byte).
                if exc.status not in _HEAD_REFUSED and not isinstance(exc, NotFoundError):
                    raise
                size = registry.read_blob(node.repository, desc.digest, limit=0).length
            if size is not None and size != desc.size:
                outcome.problems.append(
                    _Problem(
                        BLOB_SIZE_MISMATCH,
                        f"{node.role} is {size} bytes on the registry; "
                        f"the manifest says {desc.size}",
                        str(desc.digest),
                        {"expected_size": desc.size, "actual_size": size},
                    )
                )
            return outcome
        read = registry.read_blob(node.repository, desc.digest, limit=desc.size)
        if read.size < desc.size:
            outcome.problems.append(
                _Problem(
                    BLOB_TRUNCATED,
                    f"{node.role} body ended after {read.size} of {desc.size} bytes "
                    "(data gone behind a cached HEAD, or a truncated answer)",
                    str(desc.digest),
                    {"expected_size": desc.size, "actual_size": read.size},
                )
            )
        elif read.overflow:
            outcome.problems.append(
                _Problem(
                    BLOB_SIZE_MISMATCH,
                    f"{node.role} body is longer than the {desc.size} bytes the manifest says",
                    str(desc.digest),
                    {"expected_size": desc.size},
                )
            )
        elif read.digest != desc.digest:
            outcome.problems.append(
                _Problem(
                    BLOB_DIGEST_MISMATCH,
                    f"{node.role} bytes hash to {read.digest}: the content is corrupted",
                    str(desc.digest),
                    {"actual_digest": str(read.digest)},
                )
            )
        return outcome

    def _check_tag_moved(self, ref: Reference) -> _Outcome:
        assert ref.tag is not None and ref.digest is not None
        try:
            head = self.registry_for(ref.registry).head_manifest(ref.repository, ref.tag)
        except RegistryError:
            return _Outcome()  # the pinned digest is what matters; its walk reports errors
        if head.digest and head.digest != str(ref.digest):
            return _Outcome(
                problems=[
                    _Problem(
                        TAG_MOVED,
                        f"tag {ref.tag} now points to {head.digest}, not the pinned digest",
                        str(ref.digest),
                        {"tag_digest": head.digest},
                    )
                ]
            )
        return _Outcome()


# Statuses of a HEAD refused as a method rather than answered for the object.
_HEAD_REFUSED = frozenset({403, 405, 501})


def _role(desc: Descriptor) -> str:
    if desc.is_attestation:
        return "attestation"
    if desc.platform is not None:
        return str(desc.platform)
    if desc.media_type in mt.INDEXES:
        return "index"
    return "manifest"


def _filter_platforms(index: ImageIndex, platforms: Iterable[Platform]) -> list[Descriptor]:
    wanted = tuple(platforms)
    if not wanted:
        return list(index.manifests)
    kept = [
        d
        for d in index.manifests
        if d.media_type in mt.INDEXES  # nested indexes are filtered one level down
        or (
            d.platform is not None
            and not d.is_attestation
            and any(w.matches(d.platform) for w in wanted)
        )
    ]
    kept_digests = {str(d.digest) for d in kept}
    # BuildKit attestations name the child they attest in this annotation; keep those
    # that belong to a kept platform.
    kept += [
        d
        for d in index.manifests
        if d.is_attestation and d.annotations.get("vnd.docker.reference.digest") in kept_digests
    ]
    return kept


def _expected_digest(node: _Node) -> Digest | None:
    if node.descriptor is not None:
        return node.descriptor.digest
    if node.role == "digest":
        return Digest.parse(node.identifier)
    return None


def _registry_problem(node: _Node, exc: RegistryError) -> _Problem:
    details: dict[str, Any] = {"status": exc.status, "error_code": exc.code}
    digest = None if node.role == "tag" else node.identifier
    if isinstance(exc, NotFoundError):
        status = f"{exc.status or 404} {exc.code or 'NOT FOUND'}"
        if exc.code == "NAME_UNKNOWN":
            return _Problem(
                REPOSITORY_NOT_FOUND,
                f"repository {node.repository} does not exist ({status})",
                digest,
                details,
            )
        if node.role == "tag":
            return _Problem(
                TAG_NOT_FOUND,
                f"tag {node.identifier} does not resolve ({status}): the tag is missing or "
                "names a manifest whose data is gone",
                None,
                details,
            )
        what = "manifest" if node.is_manifest else f"{node.role} blob"
        return _Problem(
            MANIFEST_MISSING if node.is_manifest else BLOB_MISSING,
            f"{what} {node.identifier} is missing ({status})",
            digest,
            {**details, "role": node.role},
        )
    reason = "could not check"
    if isinstance(exc, AuthError):
        reason = "could not check (access refused)"
    elif isinstance(exc, UnavailableError):
        reason = "could not check (registry unavailable)"
    elif isinstance(exc, ProtocolError):
        reason = "could not check (unusable answer)"
    return _Problem(CHECK_ERROR, f"{reason}: {exc}", digest, details)


def _finding(problem: _Problem, node: _Node, path: tuple[str, ...]) -> Finding:
    return Finding(
        kind=problem.kind,
        severity=problem.severity,
        message=problem.message,
        repository=node.repository or None,
        reference=node.reference or None,
        digest=problem.digest,
        path=path,
        details={k: v for k, v in problem.details.items() if v is not None},
    )
