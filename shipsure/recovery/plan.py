"""Restore plans: from what a check found broken in a target registry to the exact pushes
that bring it back, or the rebuilds that must.

Input is a finished check (the verify walk's report, or a scan report): the (repository,
digest) pairs it found missing or broken, and the tags that no longer resolve. The planner
walks each reference's tree by digest, reading manifests from the target where the check
saw them intact and from the sources elsewhere, and decides per object:

- the check found it broken: push it, and do not trust a HEAD 200 for it (a stale cache
  or corrupted data answers 200 too);
- the check reached it and found nothing: leave it;
- the check never reached it (it hangs below a missing manifest): read it from the target
  now, bytes and all, since a HEAD alone cannot tell a stale cache from data.

Steps are ordered blobs first, then manifests from the leaves up (a child before any index
that lists it, nested indexes too), then tags: the registry refuses a manifest whose
references it lacks, and a parent pushed first would point at nothing if the run stopped.
Objects no source holds go to the rebuild plan with every tag and platform they break; a
manifest above them is not pushed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shipsure import mediatypes as mt
from shipsure.errors import ManifestError, ShipsureError
from shipsure.findings import Report
from shipsure.model import Descriptor, Digest, ImageIndex, ImageManifest, Manifest, parse_manifest
from shipsure.recovery.content import Rejected, fetch_manifest
from shipsure.recovery.interface import ContentSource, SourceError
from shipsure.registry.interface import NotFoundError, Registry, RegistryError

# Steps, in the order they are applied.
UPLOAD_BLOB = "upload-blob"
MOUNT_BLOB = "mount-blob"
PUT_MANIFEST = "put-manifest"
PUT_TAG = "put-tag"

# Finding kinds (verify's and scan's) that mean "this object's content is missing or bad
# in this repository". Anything else (tag-moved, unreferenced blobs, stale uploads) is
# not a restore's business.
BROKEN_KINDS = frozenset(
    {
        # verify
        "manifest-missing",
        "manifest-digest-mismatch",
        "manifest-size-mismatch",
        "digest-header-mismatch",
        "manifest-invalid",
        "blob-missing",
        "blob-size-mismatch",
        "blob-truncated",
        "blob-digest-mismatch",
        # scan
        "tag-manifest-missing",
        "revision-data-missing",
        "index-child-relinkable",
        "index-child-lost",
        "layer-link-missing",
        "tag-revision-missing",
    }
)
# Kinds whose HEAD may well answer 200: re-pushing is the cure, a HEAD proves nothing.
UNTRUSTED_HEAD_KINDS = frozenset(
    {
        "manifest-digest-mismatch",
        "digest-header-mismatch",
        "manifest-size-mismatch",
        "manifest-invalid",
        "blob-size-mismatch",
        "blob-truncated",
        "blob-digest-mismatch",
    }
)
# Kinds that name a manifest (a scan's index children, a verify's referrers).
MANIFEST_KINDS = frozenset(
    {
        "manifest-missing",
        "manifest-digest-mismatch",
        "manifest-size-mismatch",
        "digest-header-mismatch",
        "manifest-invalid",
        "tag-manifest-missing",
        "revision-data-missing",
        "index-child-relinkable",
        "index-child-lost",
        "tag-revision-missing",
    }
)
TAG_GONE_KINDS = frozenset({"tag-not-found", "tag-revision-missing", "tag-manifest-missing"})


@dataclass(frozen=True)
class Step:
    """One write. `reference` is the digest, or the tag for `put-tag`; `source` names where
    the bytes come from (a source, or `repository:<name>` for a mount)."""

    op: str
    repository: str
    digest: str
    size: int
    media_type: str
    reference: str
    source: str
    reason: str
    height: int = 0  # manifests: 0 for a leaf manifest, parents above their children
    untrusted_head: bool = False

    @property
    def label(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def moves_bytes(self) -> int:
        return self.size if self.op in (UPLOAD_BLOB, PUT_MANIFEST, PUT_TAG) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "repository": self.repository,
            "digest": self.digest,
            "reference": self.reference,
            "size": self.size,
            "media_type": self.media_type,
            "from": self.source,
            "reason": self.reason,
        }


@dataclass
class Lost:
    """Content no source holds: what a rebuild must bring back, and what it breaks."""

    repository: str
    digest: str
    role: str  # "layer", "config", "manifest linux/arm64", "index", "tag"
    size: int | None
    reason: str
    tags: dict[str, str] = field(default_factory=dict)  # reference -> digest it had
    platforms: set[str] = field(default_factory=set)
    shared_with: set[str] = field(default_factory=set)  # other references using it
    rejected: list[str] = field(default_factory=list)  # bad copies sources held
    # Sources that could not be asked for it (unreachable, no registry API): "no source
    # holds it" is then not known, and nothing may say it is.
    sources_not_checked: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "role": self.role,
            "size": self.size,
            "reason": self.reason,
            "tags": [{"reference": r, "digest": d} for r, d in sorted(self.tags.items())],
            "platforms": sorted(self.platforms),
            "shared_with": sorted(self.shared_with),
            "rejected_copies": list(self.rejected),
            "sources_not_checked": list(self.sources_not_checked),
        }


@dataclass(frozen=True)
class StaleCache:
    """A registry answering HEAD 200 for a blob whose data it cannot serve."""

    repository: str
    digest: str
    head_size: int | None
    read_size: int | None  # bytes a GET delivered; None when the GET answered 404

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "head_size": self.head_size,
            "read_size": self.read_size,
        }


@dataclass
class RestorePlan:
    target: str
    sources: list[str]
    steps: list[Step] = field(default_factory=list)
    lost: list[Lost] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # manifests/tags held back, and why
    stale: list[StaleCache] = field(default_factory=list)
    check_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # After --apply: pushes the registry did not take (it kept its corrupted data file).
    not_replaced: list[str] = field(default_factory=list)

    @property
    def bytes_to_move(self) -> int:
        return sum(step.moves_bytes for step in self.steps)

    @property
    def is_empty(self) -> bool:
        return not (self.steps or self.lost or self.blocked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sources": list(self.sources),
            "steps": [s.to_dict() for s in self.steps],
            "bytes": self.bytes_to_move,
            "rebuild": [item.to_dict() for item in self.lost],
            "blocked": list(self.blocked),
            "stale_caches": [s.to_dict() for s in self.stale],
            "check_errors": list(self.check_errors),
            "notes": list(self.notes),
            "not_replaced": list(self.not_replaced),
        }


@dataclass(frozen=True)
class Wanted:
    """One reference to bring back: `tag` and/or `digest` in `repository`."""

    repository: str
    tag: str | None
    digest: Digest | None

    @property
    def label(self) -> str:
        if self.tag is not None:
            return f"{self.repository}:{self.tag}"
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Damage:
    """What the check found: broken (repository, digest) -> finding kind; tags gone;
    repositories it could not check."""

    broken: Mapping[tuple[str, str], str]
    tags_gone: frozenset[tuple[str, str]]
    unchecked: Mapping[str, str]  # repository -> why
    # Every (repository, tag) a finding says is broken: what `--from-report` restores.
    tags_named: frozenset[tuple[str, str]] = frozenset()
    # A report read from a file may be stale: what it calls broken is read again first.
    fresh: bool = True
    # The digest a broken tag names on disk (a scan report knows it; HTTP cannot tell).
    tag_digests: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # With a scan report everything on disk was read; a verify walk reaches only what
    # hangs below intact manifests.
    deep: bool = True


def damage_from_report(report: Report | Mapping[str, Any]) -> Damage:
    """The damage a verify report (object) or a scan/verify report (JSON dict) names."""
    broken: dict[tuple[str, str], str] = {}
    tags_gone: set[tuple[str, str]] = set()
    tags_named: set[tuple[str, str]] = set()
    tag_digests: dict[tuple[str, str], str] = {}
    unchecked: dict[str, str] = {}
    rows: Iterable[Mapping[str, Any]]
    if isinstance(report, Report):
        rows = [f.to_dict() for f in report.findings]
        deep = bool(report.meta.get("deep", True))
    else:
        found = report.get("findings")
        rows = [r for r in found if isinstance(r, Mapping)] if isinstance(found, list) else []
        # Only a check that read and hashed the blobs (`verify --deep`, `scan
        # --verify-content`) vouches for their bytes, which a mount relies on. verify's
        # JSON says `deep`; scan's says `options.verify_content`.
        options = report.get("options")
        hashed = isinstance(options, Mapping) and options.get("verify_content") is True
        deep = bool(report.get("deep") is True or hashed)
    for row in rows:
        kind, repo, digest = row.get("kind"), row.get("repository"), row.get("digest")
        if not isinstance(kind, str) or not isinstance(repo, str):
            continue
        if kind == "check-error":
            unchecked.setdefault(repo, str(row.get("message", "could not check")))
            continue
        if kind in TAG_GONE_KINDS:
            for tag in _tags_of(row):
                tags_gone.add((repo, tag))
                if isinstance(digest, str):
                    tag_digests.setdefault((repo, tag), digest)
        if kind in BROKEN_KINDS and isinstance(digest, str):
            broken.setdefault((repo, digest), kind)
        if kind in BROKEN_KINDS or kind in TAG_GONE_KINDS:
            tags_named.update((repo, tag) for tag in _tags_of(row))
    return Damage(
        broken,
        frozenset(tags_gone),
        unchecked,
        tags_named=frozenset(tags_named),
        fresh=isinstance(report, Report),
        deep=deep,
        tag_digests=tag_digests,
    )


def _tags_of(row: Mapping[str, Any]) -> list[str]:
    tags = row.get("tags")
    if isinstance(tags, list):
        return [t for t in tags if isinstance(t, str)]
    reference = row.get("reference")
    if isinstance(reference, str):
        last = reference.split("@", 1)[0].rsplit("/", 1)[-1]
        if ":" in last:
            return [last.rsplit(":", 1)[1]]
    tag = row.get("tag")
    return [tag] if isinstance(tag, str) else []


@dataclass
class _Node:
    repository: str
    digest: Digest
    is_manifest: bool
    size: int | None
    media_type: str
    role: str
    children: list[_Node] = field(default_factory=list)
    parents: list[_Node] = field(default_factory=list)
    roots: set[str] = field(default_factory=set)  # labels of the references above it
    platforms: set[str] = field(default_factory=set)
    reached: bool = False
    state: str = ""  # "ok", "missing", "broken", "unknown", "lost"
    reason: str = ""
    manifest_raw: bytes | None = None
    manifest_source: str = ""
    height: int = 0
    loaded: bool = False


class Planner:
    """Builds a `RestorePlan` for `wanted` references of one target registry."""

    def __init__(
        self,
        target: Registry,
        sources: Sequence[ContentSource],
        damage: Damage,
        *,
        workers: int = 8,
    ) -> None:
        self.target = target
        self.sources = list(sources)
        self.damage = damage
        self.nodes: dict[tuple[str, bool, Digest], _Node] = {}
        self.plan = RestorePlan(target.host, [s.name for s in sources])
        self._rejections: dict[Digest, list[Rejected]] = {}
        self._lost_keys: set[tuple[str, str]] = set()
        # Sources that failed (unreachable, no registry API) when asked for an object: its
        # loss then says they were not checked, not that no source holds it.
        self._unasked: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers))

    def manifest_bytes(self, repository: str, digest: str) -> bytes | None:
        """The verified bytes the plan read for a manifest (what `put-*` steps push)."""
        with contextlib.suppress(ShipsureError):
            node = self.nodes.get((repository, True, Digest.parse(digest)))
            return node.manifest_raw if node is not None else None
        return None

    # -- the walk -------------------------------------------------------------------------

    def build(self, wanted: Sequence[Wanted]) -> RestorePlan:
        tag_steps: list[tuple[Wanted, _Node]] = []
        roots: list[_Node] = []
        labeled: list[tuple[_Node, str]] = []
        found_roots = self._pool.map(self._root_or_error, wanted)
        for item, outcome in zip(wanted, found_roots, strict=True):
            if isinstance(outcome, str):
                self.plan.check_errors.append(outcome)
                continue
            found = outcome
            if found is None:
                continue
            root, restore_tag = found
            roots.append(root)
            labeled.append((root, item.label))
            if restore_tag:
                tag_steps.append((item, root))
        # Broken manifests the references' trees did not lead to (a referrer listed by a
        # surviving `sha256-<hex>` tag, say) are roots of their own.
        repos = {w.repository for w in wanted}
        self._load(roots)  # the trees first: a broken digest may be in one
        for (repo, digest_text), kind in sorted(self.damage.broken.items()):
            if repo not in repos or kind not in MANIFEST_KINDS:
                continue
            with contextlib.suppress(ShipsureError):
                digest = Digest.parse(digest_text)
                if (repo, True, digest) not in self.nodes and (repo, False, digest) not in (
                    self.nodes
                ):
                    node = self._node(repo, digest, True, None, "", "manifest")
                    roots.append(node)
                    labeled.append((node, f"{repo}@{digest}"))
        self._load(roots)
        for node, label in labeled:
            self._label(node, label, set())
        self._mark_reached(roots)
        nodes = list(self.nodes.values())
        for node, result in zip(nodes, self._pool.map(self._settled, nodes), strict=True):
            node.state, node.reason = result
        self._steps(tag_steps)
        self._pool.shutdown()
        return self.plan

    def _root_or_error(self, item: Wanted) -> tuple[_Node, bool] | str | None:
        """A reference's root node (and whether its tag needs restoring), None when it
        is lost, or why it could not be checked."""
        if item.repository in self.damage.unchecked:
            return f"{item.label}: not planned: {self.damage.unchecked[item.repository]}"
        try:
            return self._root(item)
        except ShipsureError as exc:  # unreachable, refused, or a malformed answer
            return f"{item.label}: could not check: {exc}"

    def _load(self, frontier: list[_Node]) -> None:
        """Read every manifest below `frontier`, a level at a time, reads in parallel."""
        level = [n for n in frontier if n.is_manifest and not n.loaded]
        while level:
            for node in level:
                node.loaded = True
            manifests = self._pool.map(self._read_manifest, level)
            below: list[_Node] = []
            for node, manifest in zip(level, manifests, strict=True):
                if manifest is None:
                    continue
                node.children = self._children(node, manifest)
                for child in node.children:
                    child.parents.append(node)
                    if child.is_manifest and not child.loaded:
                        below.append(child)
            level = list({id(n): n for n in below}.values())

    def _label(self, node: _Node, label: str, platforms: set[str]) -> None:
        """Record that `label` needs `node` and everything below it (pure: no reads)."""
        if label in node.roots and platforms <= node.platforms:
            return
        node.roots.add(label)
        node.platforms |= platforms
        for child in node.children:
            self._label(child, label, platforms | ({child.role} if "/" in child.role else set()))

    def _root(self, item: Wanted) -> tuple[_Node, bool] | None:
        restore_tag = False
        digest = item.digest
        if digest is None:
            assert item.tag is not None
            if (item.repository, item.tag) in self.damage.tags_gone:
                digest = self._tag_digest(item)
                restore_tag = True
                if digest is None:
                    self.plan.lost.append(
                        Lost(
                            item.repository,
                            "",
                            "tag",
                            None,
                            "the tag does not resolve in the target and "
                            + self._not_held("tag", item.repository, f"tag {item.tag}").replace(
                                "no source holds this tag", "no source has it"
                            ),
                            tags={item.label: "unknown"},
                            sources_not_checked=self._unasked.get(
                                (item.repository, f"tag {item.tag}"), []
                            ),
                        )
                    )
                    return None
            else:
                head = self.target.head_manifest(item.repository, item.tag)
                if head.digest is None:
                    answer = self.target.get_manifest(item.repository, item.tag)
                    digest = Digest.of(answer.raw)
                else:
                    digest = Digest.parse(head.digest)
        with self._lock:
            node = self._node(item.repository, digest, True, None, "", "index")
        return node, restore_tag

    def _tag_digest(self, item: Wanted) -> Digest | None:
        """What a tag that no longer resolves named: the report's digest (storage still
        records it), else what the sources' tag names now."""
        assert item.tag is not None
        known = self.damage.tag_digests.get((item.repository, item.tag))
        if known is not None:
            with contextlib.suppress(ShipsureError):
                return Digest.parse(known)
        for source in self.sources:
            try:
                found = source.resolve_tag(item.repository, item.tag)
            except SourceError as exc:
                self.plan.notes.append(f"{item.label}: {exc}")
                self._unasked.setdefault((item.repository, f"tag {item.tag}"), []).append(
                    source.name
                )
                continue
            if found is not None:
                self.plan.notes.append(
                    f"{item.label}: the tag is gone from the target; {source.name} names "
                    f"{found} (the target's own digest is unknown)"
                )
                return found
        return None

    def _node(
        self,
        repo: str,
        digest: Digest,
        is_manifest: bool,
        size: int | None,
        media_type: str,
        role: str,
    ) -> _Node:
        key = (repo, is_manifest, digest)
        node = self.nodes.get(key)
        if node is None:
            node = _Node(repo, digest, is_manifest, size, media_type, role)
            self.nodes[key] = node
        elif node.size is None and size is not None:
            node.size = size
        return node

    def _read_manifest(self, node: _Node) -> Manifest | None:
        """From the target when the check found it intact, else from the sources."""
        key = (node.repository, str(node.digest))
        raw: bytes | None = None
        media_type = node.media_type or None
        if key not in self.damage.broken:
            with contextlib.suppress(RegistryError):
                answer = self.target.get_manifest(node.repository, str(node.digest))
                if node.digest.matches(answer.raw):
                    raw, media_type = answer.raw, media_type or answer.media_type
                    node.manifest_source = "target"
        if raw is None:
            found = fetch_manifest(self.sources, node.repository, node.digest, node.size)
            if isinstance(found, tuple):
                raw = found[0].raw
                media_type = media_type or found[0].media_type
                node.manifest_source = found[1]
            else:
                node.state = "lost"
                node.reason = self._manifest_not_held(node, found or [])
                return None
        try:
            manifest = parse_manifest(raw, media_type)
        except ManifestError as exc:
            node.state = "lost"
            node.reason = f"the only copy is not a manifest shipsure can walk: {exc}"
            return None
        node.manifest_raw = raw
        node.media_type = manifest.media_type
        node.size = len(raw)
        return manifest

    def _manifest_not_held(self, node: _Node, rejected: list[Rejected]) -> str:
        """Why no source gave a manifest: none holds it, only bad copies exist, or some
        sources could not be read (noted, and not counted as holding nothing)."""
        bad = [r for r in rejected if not r.unread]
        unread = [r for r in rejected if r.unread]
        with self._lock:
            if bad:
                self._rejections[node.digest] = bad
            for r in unread:
                self.plan.notes.append(f"{node.repository}@{node.digest}: {r.source}: {r.reason}")
                key = (node.repository, str(node.digest))
                self._unasked.setdefault(key, []).append(r.source)
        if unread:
            return self._not_held("manifest", node.repository, str(node.digest))
        return "no source holds a copy that verifies" if bad else "no source holds this manifest"

    def _children(self, node: _Node, manifest: Manifest) -> list[_Node]:
        repo = node.repository
        if isinstance(manifest, ImageManifest):
            found = [self._blob(repo, manifest.config, "config")]
            found += [
                self._blob(repo, d, f"layer {i}")
                for i, d in enumerate(manifest.layers)
                if not d.is_foreign
            ]
            return found
        assert isinstance(manifest, ImageIndex)
        children: list[_Node] = []
        for d in manifest.manifests:
            if d.media_type in _BLOB_TYPES:
                children.append(self._blob(repo, d, "blob"))
                continue
            role = "index" if d.media_type in mt.INDEXES else "manifest"
            if d.is_attestation:
                role = "attestation"
            elif d.platform is not None:
                role = str(d.platform)
            children.append(self._node(repo, d.digest, True, d.size, d.media_type, role))
        return children

    def _blob(self, repo: str, desc: Descriptor, role: str) -> _Node:
        return self._node(repo, desc.digest, False, desc.size, desc.media_type, role)

    # -- what the check saw, and what it did not ------------------------------------------

    def _mark_reached(self, roots: Iterable[_Node]) -> None:
        """The check reached an object when an intact manifest above it was walked: a
        root whose tag resolves, then the children of every reached, intact manifest."""
        stack = [
            r
            for r in roots
            if not any((r.repository, t) in self.damage.tags_gone for t in _tag_labels(r))
        ]
        while stack:
            node = stack.pop()
            if node.reached:
                continue
            node.reached = True
            if (node.repository, str(node.digest)) in self.damage.broken:
                continue
            stack.extend(node.children)

    def _settled(self, node: _Node) -> tuple[str, str]:
        """(state, reason) of a node in the target (run on the planner's threads)."""
        if node.state == "lost":
            return node.state, node.reason
        kind = self.damage.broken.get((node.repository, str(node.digest)))
        if kind is not None and not self.damage.fresh:
            # From a saved report: the registry may have been repaired since.
            state, reason = self._probe(node)
            return state, kind if state != "ok" and reason == "blob-missing" else reason
        if kind is not None:
            if kind == "blob-truncated":
                self._check_stale(node)
            return "broken" if kind in UNTRUSTED_HEAD_KINDS else "missing", kind
        if node.reached:
            return "ok", ""
        return self._probe(node)

    def _probe(self, node: _Node) -> tuple[str, str]:
        """Read an object the check did not: bytes and all (a HEAD cannot tell data from a
        stale cache entry)."""
        try:
            if node.is_manifest:
                answer = self.target.get_manifest(node.repository, str(node.digest))
                if node.digest.matches(answer.raw):
                    return "ok", ""
                return "broken", "manifest-digest-mismatch"
            size = node.size or 0
            read = self.target.read_blob(node.repository, node.digest, limit=size)
        except NotFoundError:
            return "missing", "manifest-missing" if node.is_manifest else "blob-missing"
        except RegistryError as exc:
            self.plan.check_errors.append(
                f"{node.repository}@{node.digest}: could not check: {exc}"
            )
            return "unknown", "check-error"
        if read.size == size and not read.overflow and read.digest == node.digest:
            return "ok", ""
        if read.size < size:
            self._check_stale(node)
            return "broken", "blob-truncated"
        return "broken", "blob-digest-mismatch" if not read.overflow else "blob-size-mismatch"

    def _check_stale(self, node: _Node) -> None:
        with contextlib.suppress(RegistryError):
            head = self.target.head_blob(node.repository, node.digest)
            read_size: int | None = None
            with contextlib.suppress(NotFoundError):
                read_size = self.target.read_blob(
                    node.repository, node.digest, limit=node.size or 0
                ).size
            self.plan.stale.append(
                StaleCache(node.repository, str(node.digest), head.size, read_size)
            )

    # -- steps ----------------------------------------------------------------------------

    def _steps(self, tag_steps: list[tuple[Wanted, _Node]]) -> None:
        verified_elsewhere = self._verified_copies()
        blobs: list[Step] = []
        manifests: list[Step] = []
        blocked: set[tuple[str, bool, Digest]] = set()
        needed = sorted(
            (n for n in self.nodes.values() if not n.is_manifest and n.state not in _SETTLED),
            key=lambda n: (n.repository, str(n.digest)),
        )
        found = self._pool.map(lambda n: self._blob_step(n, verified_elsewhere), needed)
        for node, step in zip(needed, found, strict=True):
            if step is None:
                self._lose(node, self._not_held("blob", node.repository, str(node.digest)))
            else:
                blobs.append(step)
        for node in self._manifests_leaves_first():
            held_back = [c for c in node.children if self._is_lost(c, blocked)]
            if node.state in ("ok", "unknown") and not held_back:
                continue
            if node.state == "lost":
                self._lose(node, node.reason)
                blocked.add((node.repository, True, node.digest))
                continue
            if held_back:
                blocked.add((node.repository, True, node.digest))
                if node.state not in ("ok", "unknown"):
                    names = ", ".join(f"{c.role} {c.digest}" for c in held_back[:3])
                    self.plan.blocked.append(
                        f"{node.repository}@{node.digest} ({node.role}): not pushed, "
                        f"it references content no source gave ({names})"
                    )
                continue
            assert node.manifest_raw is not None
            manifests.append(
                Step(
                    PUT_MANIFEST,
                    node.repository,
                    str(node.digest),
                    len(node.manifest_raw),
                    node.media_type,
                    str(node.digest),
                    node.manifest_source,
                    node.reason,
                    height=node.height,
                    untrusted_head=node.state == "broken",
                )
            )
        tags: list[Step] = []
        for item, root in tag_steps:
            if (root.repository, True, root.digest) in blocked or root.manifest_raw is None:
                self.plan.blocked.append(
                    f"{item.label}: tag not restored: its manifest {root.digest} cannot be"
                )
                continue
            assert item.tag is not None
            tags.append(
                Step(
                    PUT_TAG,
                    item.repository,
                    str(root.digest),
                    len(root.manifest_raw),
                    root.media_type,
                    item.tag,
                    root.manifest_source,
                    "tag-not-found",
                    height=root.height + 1,
                )
            )
        manifests.sort(key=lambda s: (s.height, s.repository, s.digest))
        self.plan.steps = [*blobs, *manifests, *tags]
        self._describe_lost()

    def _blob_step(self, node: _Node, verified: Mapping[Digest, str]) -> Step | None:
        size = node.size or 0
        base = dict(
            repository=node.repository,
            digest=str(node.digest),
            size=size,
            media_type=node.media_type,
            reference=str(node.digest),
            reason=node.reason,
            untrusted_head=node.state == "broken",
        )
        other = verified.get(node.digest)
        if node.reason in ("blob-missing", "layer-link-missing") and other not in (
            None,
            node.repository,
        ):
            # The data is intact in another repository of the target (read and hashed
            # there): a mount links it without moving a byte.
            return Step(MOUNT_BLOB, source=f"repository:{other}", **base)  # type: ignore[arg-type]
        for source in self.sources:
            try:
                if source.has_blob(node.repository, node.digest):
                    return Step(UPLOAD_BLOB, source=source.name, **base)  # type: ignore[arg-type]
            except SourceError as exc:
                with self._lock:
                    self.plan.notes.append(f"{node.repository}@{node.digest}: {exc}")
                    key = (node.repository, str(node.digest))
                    self._unasked.setdefault(key, []).append(source.name)
        return None

    def _not_held(self, what: str, repository: str, digest: str) -> str:
        """Why nothing could be planned for an object: no source holds it, or some could
        not be asked (the notes say why), which is not the same as holding nothing."""
        failed = self._unasked.get((repository, digest))
        if not failed:
            return f"no source holds this {what}"
        return f"no source gave this {what}: {', '.join(failed)} could not be checked (see notes)"

    def _verified_copies(self) -> dict[Digest, str]:
        """Blobs whose bytes the check (or the probe) read and hashed intact, by the
        repository holding them. Only a deep check counts: a HEAD proves nothing."""
        if not self.damage.deep:
            return {}
        found: dict[Digest, str] = {}
        for node in self.nodes.values():
            if not node.is_manifest and node.state == "ok":
                found.setdefault(node.digest, node.repository)
        return found

    def _manifests_leaves_first(self) -> list[_Node]:
        def height(node: _Node, seen: frozenset[int]) -> int:
            if id(node) in seen:
                return 0
            below = [height(c, seen | {id(node)}) for c in node.children if c.is_manifest]
            return 1 + max(below) if below else 0

        manifests = [n for n in self.nodes.values() if n.is_manifest]
        for node in manifests:
            node.height = height(node, frozenset())
        return sorted(manifests, key=lambda n: (n.height, n.repository, str(n.digest)))

    def _is_lost(self, node: _Node, blocked: set[tuple[str, bool, Digest]]) -> bool:
        if node.is_manifest:
            return (node.repository, True, node.digest) in blocked
        return (node.repository, str(node.digest)) in self._lost_keys

    def _lose(self, node: _Node, reason: str) -> None:
        role = node.role if not node.is_manifest else f"manifest {node.role}"
        lost = Lost(node.repository, str(node.digest), role, node.size, reason)
        lost.sources_not_checked = list(self._unasked.get((node.repository, str(node.digest)), []))
        lost.rejected = [f"{r.source}: {r.reason}" for r in self._rejections.get(node.digest, [])]
        self.plan.lost.append(lost)
        self._lost_keys.add((node.repository, str(node.digest)))

    def _describe_lost(self) -> None:
        by_digest: dict[Digest, list[_Node]] = {}
        for node in self.nodes.values():
            by_digest.setdefault(node.digest, []).append(node)
        for item in self.plan.lost:
            if not item.digest:
                continue
            digest = Digest.parse(item.digest)
            holders = by_digest.get(digest, [])
            mine = [n for n in holders if n.repository == item.repository]
            for node in mine:
                item.platforms |= node.platforms
                for label in node.roots:
                    item.tags[label] = self._root_digest(label)
            for node in holders:
                item.shared_with |= {r for r in node.roots if r not in item.tags}

    def _root_digest(self, label: str) -> str:
        for node in self.nodes.values():
            if label in node.roots and not node.parents:
                return str(node.digest)
        return "unknown"


_SETTLED = frozenset({"ok", "unknown"})  # nothing to push: intact, or could not check

_BLOB_TYPES = frozenset(
    {mt.OCI_CONFIG, mt.DOCKER_CONFIG, mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD}
)


def _tag_labels(node: _Node) -> list[str]:
    return [label.rsplit(":", 1)[1] for label in node.roots if "@" not in label]
