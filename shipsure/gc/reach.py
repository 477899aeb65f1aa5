"""What every tag really needs: the correct reachability a garbage collector must respect.

tag -> manifest (index, nested indexes) -> children -> config and layers, plus referrers
(manifests in the same repository whose `subject` is one of those manifests, and what they
need in turn). A manifest needs its revision link in the repository and its `data`; a blob
needs the repository's `_layers` link and its `data` (registry-facts §3).

This is a pull's view (foreign layers are fetched from their URLs, not the registry), built
from verified manifest bytes. `manifest_node` is the one place the GC code reads the
content model (`shipsure.storage.graph`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from shipsure.errors import ManifestError
from shipsure.gc.tree import MISSING, GCTree
from shipsure.storage import layout
from shipsure.storage.graph import ManifestNode, node_from_bytes
from shipsure.storage.interface import StorageError

MANIFEST = "manifest"
BLOB = "blob"


def manifest_node(raw: bytes, digest: str) -> ManifestNode | None:
    """References of a manifest's bytes as a pull sees them, or None when the bytes do not
    hash to `digest` or are not a manifest. The single adapter onto the content model."""
    algorithm, _, hex_ = digest.partition(":")
    if algorithm not in layout.ALGORITHMS or hashlib.new(algorithm, raw).hexdigest() != hex_:
        return None
    try:
        return node_from_bytes(raw, digest)
    except ManifestError:
        return None


@dataclass(frozen=True, slots=True)
class Need:
    """One object a tag needs in its repository."""

    kind: str  # MANIFEST or BLOB
    digest: str
    path: tuple[str, ...]  # from the tag to this object, e.g. ("tag v1", "index sha256:..")
    present: bool  # link and data are there now
    referrer: bool = False  # reached through a referrer (signature, SBOM), not the image
    # The blob whose data serves it, when not `digest` itself: a blob pushed under another
    # algorithm (sha512) lives under the canonical digest its layer link names.
    data: str | None = None


@dataclass
class TagNeeds:
    repository: str
    tag: str
    digest: str | None  # what `current/link` names; None when absent or malformed
    needs: list[Need] = field(default_factory=list)
    # Manifests on the tag's tree whose references cannot be known (data missing/unusable).
    unknown: list[Need] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """Everything the image needs is there now (referrers aside)."""
        return (
            self.digest is not None
            and all(n.present for n in self.needs if not n.referrer)
            and not any(not n.referrer for n in self.unknown)
        )


class Reachability:
    """Per-tag needs over one storage tree; nodes and referrer indexes are cached."""

    def __init__(self, tree: GCTree) -> None:
        self.tree = tree
        self._nodes: dict[str, ManifestNode | None] = {}
        self._referrers: dict[str, dict[str, list[str]]] = {}
        self.problems: list[tuple[str, str]] = []  # (path, message) that could not be read

    def node(self, digest: str) -> ManifestNode | None:
        if digest not in self._nodes:
            try:
                raw = self.tree.manifest_bytes(digest)
            except StorageError as exc:
                self.problems.append((layout.blob_data(digest), str(exc)))
                raw = None
            self._nodes[digest] = None if raw is None else manifest_node(raw, digest)
        return self._nodes[digest]

    def _target(self, path: str) -> str | None:
        """The digest a link names; None when absent, malformed or unreadable."""
        try:
            raw = self.tree.link(path)
        except StorageError as exc:
            self.problems.append((path, str(exc)))
            return None
        return layout.parse_link(raw) if raw is not None else None

    def _linked(self, path: str) -> bool:
        return self._target(path) is not None

    def _data(self, digest: str) -> bool:
        try:
            return self.tree.data_state(digest) != MISSING
        except StorageError as exc:
            self.problems.append((layout.blob_data(digest), str(exc)))
            return False

    def revisions(self, repository: str) -> list[str]:
        """Digests with a well-formed revision link in `repository`."""
        base = f"{layout.repository_dir(repository)}/{layout.MANIFESTS_DIR}/revisions"
        try:
            links = self.tree.link_files(base)
        except StorageError as exc:
            self.problems.append((base, str(exc)))
            return []
        return [
            link.folder_digest
            for link in links
            if link.folder_digest is not None and layout.parse_link(link.raw) is not None
        ]

    def referrers(self, repository: str) -> dict[str, list[str]]:
        """subject digest -> manifests of `repository` that name it as their subject."""
        got = self._referrers.get(repository)
        if got is None:
            got = {}
            for digest in self.revisions(repository):
                node = self.node(digest)
                if node is not None and node.subject:
                    got.setdefault(node.subject, []).append(digest)
            self._referrers[repository] = got
        return got

    def tag_needs(self, repository: str, tag: str, current: bytes | None) -> TagNeeds:
        digest = layout.parse_link(current) if current is not None else None
        out = TagNeeds(repository, tag, digest)
        if digest is None:
            return out
        seen: set[tuple[str, str]] = set()
        stack: list[tuple[str, str, tuple[str, ...], bool]] = [
            (MANIFEST, digest, (f"tag {tag}",), False)
        ]
        referrers = self.referrers(repository)
        # Read the repository's layer links in one pass (the revisions were read above).
        try:
            self.tree.link_files(f"{layout.repository_dir(repository)}/{layout.LAYERS_DIR}")
        except StorageError as exc:
            self.problems.append((layout.repository_dir(repository), str(exc)))
        while stack:
            kind, d, path, via_referrer = stack.pop()
            if (kind, d) in seen:
                continue
            seen.add((kind, d))
            if kind == BLOB:
                target = self._target(layout.layer_link(repository, d))
                data = layout.link_serves(d, target) or d
                present = target is not None and self._data(data)
                out.needs.append(
                    Need(BLOB, d, path, present, via_referrer, data if data != d else None)
                )
                continue
            linked = self._linked(layout.revision_link(repository, d))
            has_data = self._data(d)
            node = self.node(d) if has_data else None
            label = node.label if node is not None else f"manifest {d}"
            here = (*path, label) if len(path) == 1 else path
            need = Need(MANIFEST, d, here, linked and has_data, via_referrer)
            out.needs.append(need)
            if node is None:
                out.unknown.append(need)
                continue
            for ref in node.blobs:
                stack.append((BLOB, ref.digest, (*here, ref.label), via_referrer))
            for ref in node.children:
                stack.append((MANIFEST, ref.digest, (*here, ref.label), via_referrer))
            for referrer in referrers.get(d, ()):
                stack.append((MANIFEST, referrer, (*here, f"referrer {referrer}"), True))
        return out

    def iter_tags(self, repositories: list[str]) -> Iterator[TagNeeds]:
        """Every tag's needs, repository by repository; what was cached about a repository
        is dropped once its tags are done, so memory follows one repository."""
        for repository in repositories:
            try:
                listed = self.tree.tags(repository)
            except StorageError as exc:
                self.problems.append((layout.tags_dir(repository), str(exc)))
                listed = None
            if listed is not None:
                names, current = listed
                for name in names:
                    yield self.tag_needs(repository, name, current.get(name))
            self._nodes.clear()
            self._referrers.pop(repository, None)
            self.tree.forget(repository)

    def all_tags(self, repositories: list[str]) -> list[TagNeeds]:
        return list(self.iter_tags(repositories))
