"""Walk one repository's storage the way a pull would: tag -> index -> child -> blobs.

Every fault becomes a candidate with the tags it breaks, the path from the first tag that
reaches it, and the storage facts it rests on (re-checked before reporting). Content only
reachable by digest (untagged revisions and what they name) is walked too, with no tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.recheck import (
    Absent,
    Evidence,
    FolderPresent,
    HashDiffers,
    LinkReads,
    Present,
    SizeIs,
)
from shipsure.checks.scan.remedy import (
    RelinkLayer,
    RelinkRevision,
    Remedy,
    RemoveDanglingLayerLink,
    RemoveTempFile,
    RemoveUpload,
)
from shipsure.findings import CHECK_ERROR
from shipsure.storage import layout
from shipsure.storage.graph import ManifestNode, Ref
from shipsure.storage.interface import FileInfo, Hashed, Missing, Storage, Unreadable
from shipsure.storage.inventory import (
    BlobStore,
    Link,
    ManifestState,
    RepositoryInventory,
    stat_state,
)

ROOT_TAG = "tag"
ROOT_REVISION = "revision"
CHILD = "child"


@dataclass
class Candidate:
    """A fault seen once; it becomes a Finding only if its evidence still holds."""

    kind: str
    repository: str | None
    digest: str | None
    reference: str | None
    message: str
    path: tuple[str, ...]
    evidence: tuple[Evidence, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    breaks_tag: bool = False  # the fault itself keeps a tag from resolving: critical
    remedy: Remedy | None = None  # what `--apply` may do about it


@dataclass(frozen=True, slots=True)
class Unknown:
    """A place whose manifests' references could not be learned (a manifest the collector
    reads, or a folder of revision links, that could not be read or used): no blob may be
    called unreferenced while one exists, since it may name any of them."""

    storage_path: str
    repository: str | None
    digest: str | None  # the manifest's, when the place is one manifest's data
    why: str


# (kind, digest, reference, storage path): the path tells apart two malformed links of one
# digest (a tag's current link and its history link); None for every other kind.
_Key = tuple[str, str | None, str | None, str | None]


@dataclass
class WalkResult:
    candidates: list[Candidate]
    referenced: set[str]  # manifests and blobs this repository's content names
    manifests: set[str]  # the manifests among them that were read
    counts: dict[str, int]
    unknown: list[Unknown] = field(default_factory=list)


class RepositoryWalk:
    def __init__(
        self,
        inv: RepositoryInventory,
        blobs: BlobStore,
        *,
        verify_content: bool,
        upload_max_age: float,
        now: float,
        verify_only: frozenset[str] | None = None,
    ) -> None:
        self.inv = inv
        self.repo = inv.name
        self.blobs = blobs
        self.verify_content = verify_content
        # With verify_content: hash only these blobs (another process hashed the rest and
        # found them sound), or every blob when None.
        self.verify_only = verify_only
        self.upload_max_age = upload_max_age
        self.now = now
        self.faults: dict[_Key, Candidate] = {}
        self.referenced: set[str] = set()
        self.manifests: set[str] = set()
        # Fault keys found at or below a node, so a second tag reaching it only adds itself.
        self._under: dict[tuple[str, str], list[_Key]] = {}
        self._blob_faults: dict[str, list[_Key]] = {}
        self._in_progress: set[str] = set()
        self._blob_refs: set[str] = set()
        self.unknown: dict[str, Unknown] = {}

    # --- recording --------------------------------------------------------------------

    def _fault(
        self,
        kind: str,
        digest: str | None,
        path: tuple[str, ...],
        message: str,
        evidence: tuple[Evidence, ...],
        *,
        reference: str | None = None,
        remedy: Remedy | None = None,
        **details: Any,
    ) -> _Key:
        where = details.get("storage_path") if kind == k.MALFORMED_LINK else None
        key = (kind, digest, reference, where)
        if key not in self.faults:
            self.faults[key] = Candidate(
                kind, self.repo, digest, reference, message, path, evidence, details
            )
            self.faults[key].remedy = remedy
        return key

    def _check_error(
        self, path_on_disk: str, message: str, path: tuple[str, ...], link: str = ""
    ) -> _Key:
        if link:
            return self._link_outside(link, message, path)
        key = (CHECK_ERROR, path_on_disk, None, None)
        if key not in self.faults:
            self.faults[key] = Candidate(
                CHECK_ERROR,
                self.repo,
                None,
                None,
                f"could not read {path_on_disk}: {message}",
                path,
                (),
                {"storage_path": path_on_disk},
            )
        return key

    def _unknown(self, path: str, digest: str | None, why: str) -> None:
        self.unknown.setdefault(path, Unknown(path, self.repo, digest, why))

    def _link_outside(self, link: str, message: str, path: tuple[str, ...]) -> _Key:
        # One finding per link, however many reads it stopped. No evidence to re-check and
        # no remedy: removing a link someone placed is the operator's call.
        key = (k.LINK_OUTSIDE_ROOT, None, None, link)
        if key not in self.faults:
            self.faults[key] = link_outside_candidate(self.repo, link, message, path)
        return key

    # --- the walk ---------------------------------------------------------------------

    def run(self) -> WalkResult:
        inv = self.inv
        revisions = f"{layout.repository_dir(self.repo)}/{layout.MANIFESTS_DIR}/revisions"
        for problem in inv.errors:
            self._check_error(problem.path, problem.message, (), problem.link)
            if _within(problem.path, revisions) or _within(revisions, problem.path):
                # Revision links (or a folder above them) unread: which manifests the
                # collector marks here, and so what they reference, is unknown.
                self._unknown(problem.path, None, problem.message)
        tagged: set[str] = set()
        for tag in sorted(inv.tags):
            keys = self._tag(tag, inv.tags[tag])
            for key in keys:
                self.faults[key].tags.add(tag)
            link = inv.tags[tag]
            if link is not None and link.digest is not None:
                tagged.add(link.digest)
        # By-digest content: every revision no tag reached first, then what it names.
        for digest in sorted(inv.revisions):
            if (digest, ROOT_TAG) in self._under or (digest, CHILD) in self._under:
                continue
            if digest in inv.superseded_referrer_indexes:
                # A referrers index its client replaced (attach or delete of a referrer) and
                # left untagged: nobody pulls it, and its missing children are referrers
                # deleted on purpose. Its own data stays referenced by its revision link.
                self.referenced.add(digest)
                self.manifests.add(digest)
                continue
            self._visit(digest, (f"revision {digest}",), ROOT_REVISION)
        self._tag_history()
        self._layer_links()
        self._uploads()
        for path in self.inv.temp_files:
            fault = temp_file_candidate(self.blobs.storage, self.repo, path, self.now)
            if fault is not None:
                self.faults[(k.TEMP_FILE_STALE, None, None, path)] = fault
        counts = {
            "repositories": 1,
            "tags": len(inv.tags),
            "revisions": len(inv.revisions),
            "layer_links": len(inv.layers),
            "uploads": len(inv.uploads),
        }
        return WalkResult(
            list(self.faults.values()),
            self.referenced,
            self.manifests,
            counts,
            list(self.unknown.values()),
        )

    def _tag(self, tag: str, link: Link | None) -> list[_Key]:
        current = layout.tag_current_link(self.repo, tag)
        where = (f"tag {tag}",)
        if link is None:
            return [
                self._fault(
                    k.TAG_LINK_MISSING,
                    None,
                    where,
                    f"tag {tag} has a folder but no current/link: it is listed but answers 404",
                    (Absent(current), FolderPresent(layout.tag_dir(self.repo, tag))),
                    reference=tag,
                    storage_path=current,
                )
            ]
        if link.digest is None:
            keys = [
                self._fault(
                    k.MALFORMED_LINK,
                    link.intended,
                    where,
                    f"tag {tag}: current/link holds {link.raw[:80]!r}, not exactly a digest"
                    + _meant(link)
                    + ": the registry cannot read it and the tag does not resolve",
                    (LinkReads(current, link.raw),),
                    reference=tag,
                    storage_path=current,
                )
            ]
            self.faults[keys[0]].breaks_tag = True
            return keys
        return self._visit(link.digest, where, ROOT_TAG, tag_link=link)

    def _visit(
        self, digest: str, path: tuple[str, ...], via: str, tag_link: Link | None = None
    ) -> list[_Key]:
        memo_key = (digest, ROOT_TAG if via == ROOT_TAG else CHILD)
        done = self._under.get(memo_key)
        if done is not None:
            return done
        if digest in self._in_progress:  # an index that (indirectly) lists itself
            return []
        self._in_progress.add(digest)
        try:
            keys = self._visit_fresh(digest, path, via, tag_link)
        finally:
            self._in_progress.discard(digest)
        self._under[memo_key] = keys
        return keys

    def _visit_fresh(
        self, digest: str, path: tuple[str, ...], via: str, tag_link: Link | None
    ) -> list[_Key]:
        self.referenced.add(digest)
        self.manifests.add(digest)
        rev = self.inv.revisions.get(digest)
        m = self.blobs.manifest(digest)
        if rev is not None and rev.digest == digest and m.node is not None:
            # The common, healthy case first: nothing below needs building.
            return self._walk_node(m.node, (*path, m.node.label) if via == ROOT_TAG else path)
        repo = self.repo
        rev_path = layout.revision_link(repo, digest)
        data = layout.blob_data(digest)
        # A tag fault holds only while the tag still names this digest.
        tag_fact: tuple[Evidence, ...] = (
            (LinkReads(tag_link.path, tag_link.raw),) if tag_link is not None else ()
        )
        # The collector reads every manifest with a revision link (registry-facts §1); when
        # its bytes cannot be read or used here, what it references is unknown. (Without a
        # link the collector never reads it: its blobs go, whatever it names.)
        linked = rev is not None or self.inv.uncertain(rev_path)
        if linked and m.node is None and m.state is not ManifestState.MISSING:
            self._unknown(data, digest, m.message or m.state.value)
        if m.state is ManifestState.UNREADABLE:
            return [self._check_error(data, m.message, path, m.link)]
        node_path = (*path, m.node.label) if via == ROOT_TAG and m.node else path
        if rev is None and self.inv.uncertain(rev_path):
            # The link could not be read (reported as such): not "missing". What the data
            # names is still walked, so its blobs count as referenced.
            return self._walk_node(m.node, node_path) if m.node is not None else []
        if rev is None:
            relinkable = m.state is ManifestState.OK
            state = "present and verified" if relinkable else _data_state(m.state)
            data_fact: Evidence = Present(data) if relinkable else Absent(data)
            if m.state is ManifestState.DIGEST_MISMATCH:
                data_fact = HashDiffers(data, digest)
            if via == ROOT_TAG:
                kind = k.TAG_REVISION_MISSING
                message = (
                    f"{path[0]} names {digest}, which has no revision link in this repository: "
                    f"the tag answers 404 (manifest data {state})"
                )
            elif via == CHILD:
                kind = k.INDEX_CHILD_RELINKABLE if relinkable else k.INDEX_CHILD_LOST
                message = (
                    f"index child {digest} has no revision link: 404 MANIFEST_UNKNOWN "
                    f"(manifest data {state}"
                    + ("; re-create the link to serve it again)" if relinkable else ")")
                )
            else:  # pragma: no cover - revision roots always have a link
                return []
            key = self._fault(
                kind,
                digest,
                node_path,
                message,
                (*tag_fact, Absent(rev_path), data_fact),
                remedy=RelinkRevision(repo, digest) if relinkable else None,
                relinkable=relinkable,
                storage_path=rev_path,
            )
            keys = [key]
            if relinkable and m.node is not None:
                keys += self._walk_node(m.node, node_path)
            return keys
        if rev.digest != digest:
            key = self._fault(
                k.MALFORMED_LINK,
                digest,
                node_path,
                f"revision link of {digest} holds {rev.raw[:80]!r}, not exactly a digest"
                f"{_meant(rev)}: the manifest cannot be served",
                (LinkReads(rev.path, rev.raw),),
                storage_path=rev.path,
            )
            # What the data names is still walked (as when the link is unread): its blobs
            # are this manifest's, not garbage, and serve again once the link is fixed.
            return [key, *(self._walk_node(m.node, node_path) if m.node is not None else [])]
        if m.state is ManifestState.MISSING:
            kind = k.TAG_MANIFEST_MISSING if via == ROOT_TAG else k.REVISION_DATA_MISSING
            what = f"{path[0]} names" if via == ROOT_TAG else "revision link of"
            return [
                self._fault(
                    kind,
                    digest,
                    node_path,
                    f"{what} {digest} but its manifest data is gone: 404 MANIFEST_UNKNOWN",
                    (*tag_fact, Present(rev_path), Absent(data)),
                    storage_path=data,
                )
            ]
        if m.state is ManifestState.DIGEST_MISMATCH:
            return [
                self._fault(
                    k.MANIFEST_DIGEST_MISMATCH,
                    digest,
                    node_path,
                    f"manifest data of {digest} is corrupt: {m.message}",
                    (HashDiffers(data, digest),),
                    storage_path=data,
                )
            ]
        if m.state is ManifestState.INVALID or m.node is None:
            return [
                self._fault(
                    k.MANIFEST_INVALID,
                    digest,
                    node_path,
                    f"manifest {digest} cannot be read: {m.message}",
                    (Present(data),),
                    storage_path=data,
                )
            ]
        return self._walk_node(m.node, node_path)

    def _walk_node(self, node: ManifestNode, path: tuple[str, ...]) -> list[_Key]:
        # Foreign layers are listed, so garbage collection keeps their bytes when they were
        # pushed too; a pull fetches them from their urls, so nothing here is checked.
        self.referenced.update(ref.digest for ref in node.foreign)
        keys: list[_Key] = []
        for child in node.children:
            keys += self._visit(child.digest, (*path, child.label), CHILD)
        for ref in node.blobs:
            keys += self._blob(ref, path)
        return keys

    def _blob(self, ref: Ref, parent: tuple[str, ...]) -> list[_Key]:
        digest = ref.digest
        self.referenced.add(digest)
        self._blob_refs.add(digest)
        done = self._blob_faults.get(digest)
        if done is not None:
            return done
        link = self.inv.layers.get(digest)
        # A blob pushed under another algorithm (sha512) is served from the data of the
        # canonical digest its link names (`Link.serves`): that data is what it needs.
        served = link.serves(digest) if link is not None else None
        data_digest = served or digest
        if data_digest != digest:
            self.referenced.add(data_digest)
        st = self.blobs.stat(data_digest)
        verify = self.verify_content and (
            self.verify_only is None or data_digest in self.verify_only
        )
        if (
            not verify
            and served is not None
            and type(st) is FileInfo
            and (ref.size < 0 or st.size == ref.size)
        ):
            # The common, healthy case first: no paths or evidence to build.
            keys: list[_Key] = []
            self._blob_faults[digest] = keys
            return keys
        keys = []
        path = (*parent, ref.label)
        data = layout.blob_data(data_digest)
        link_path = layout.layer_link(self.repo, digest)
        match st:
            case Unreadable(why, outside):
                keys.append(self._check_error(data, why, path, outside))
            case Missing():
                has_link = link is not None
                keys.append(
                    self._fault(
                        k.BLOB_MISSING,
                        digest,
                        path,
                        f"blob {digest} has no data: 404 BLOB_UNKNOWN"
                        + (" (the repository's layer link dangles)" if has_link else ""),
                        (Absent(data),),
                        remedy=RemoveDanglingLayerLink(self.repo, digest) if has_link else None,
                        storage_path=data,
                        layer_link="present" if has_link else "absent",
                    )
                )
            case FileInfo(size):
                if ref.size >= 0 and size != ref.size:
                    keys.append(
                        self._fault(
                            k.BLOB_SIZE_MISMATCH,
                            digest,
                            path,
                            f"blob {digest} data is {size} bytes, the manifest says {ref.size}",
                            (SizeIs(data, size),),
                            storage_path=data,
                            size=size,
                            expected_size=ref.size,
                        )
                    )
                elif verify:
                    keys += self._verify(data_digest, size, path)
                if link is None and not self.inv.uncertain(link_path):
                    keys.append(
                        self._fault(
                            k.LAYER_LINK_MISSING,
                            digest,
                            path,
                            f"blob {digest} has data but no layer link in this repository: 404 "
                            "BLOB_UNKNOWN here (re-linkable)",
                            (Absent(link_path), Present(data)),
                            remedy=RelinkLayer(self.repo, digest),
                            storage_path=link_path,
                        )
                    )
        if link is not None and served is None:
            keys.append(self._malformed_layer_link(digest, link, path))
        self._blob_faults[digest] = keys
        return keys

    def _verify(self, digest: str, size: int, path: tuple[str, ...]) -> list[_Key]:
        data = layout.blob_data(digest)
        match self.blobs.content_hash(digest, size):
            case Missing():  # vanished since the stat: the re-check decides
                return []
            case Unreadable(why, link):
                return [self._check_error(data, why, path, link)]
            case Hashed(actual):
                algorithm, _, hex_ = digest.partition(":")
                if actual == hex_:
                    return []
                return [
                    self._fault(
                        k.BLOB_DIGEST_MISMATCH,
                        digest,
                        path,
                        f"blob {digest} data is corrupt: it hashes to {algorithm}:{actual}",
                        (HashDiffers(data, digest),),
                        storage_path=data,
                        actual_digest=f"{algorithm}:{actual}",
                    )
                ]
        return []  # pragma: no cover - every HashState is matched above

    def _malformed_layer_link(self, digest: str, link: Link, path: tuple[str, ...]) -> _Key:
        return self._fault(
            k.MALFORMED_LINK,
            digest,
            path,
            f"layer link of {digest} holds {link.raw[:80]!r}, not exactly a digest{_meant(link)}: "
            "the blob cannot be served here",
            (LinkReads(link.path, link.raw),),
            storage_path=link.path,
        )

    def _tag_history(self) -> None:
        """History links of tags (`index/<alg>/<hex>/link`) that are malformed. The registry
        reads them when it deletes a manifest, not when it serves one: no tag breaks."""
        for tag, digest, link in self.inv.bad_history:
            self._fault(
                k.MALFORMED_LINK,
                digest,
                (f"tag {tag}", f"history link {digest}"),
                f"tag {tag}: history link of {digest} holds {link.raw[:80]!r}, not exactly a "
                f"digest{_meant(link)}",
                (LinkReads(link.path, link.raw),),
                storage_path=link.path,
            )

    def _layer_links(self) -> None:
        """Layer links no manifest of this repository uses: dangling or malformed."""
        for digest in sorted(self.inv.layers):
            if digest in self._blob_refs:
                continue
            link = self.inv.layers[digest]
            where = (f"layer link {digest}",)
            served = link.serves(digest)
            if served is None:
                self._malformed_layer_link(digest, link, where)
                continue
            match self.blobs.stat(served):
                case Missing():
                    self._fault(
                        k.LAYER_LINK_DANGLING,
                        digest,
                        where,
                        f"layer link of {digest} dangles: its data is gone (HEAD may still "
                        "answer 200 from a blob-descriptor cache)",
                        (Present(link.path), Absent(layout.blob_data(served))),
                        remedy=RemoveDanglingLayerLink(self.repo, digest),
                        storage_path=link.path,
                    )
                case Unreadable(why, outside):
                    self._check_error(layout.blob_data(served), why, where, outside)

    def _uploads(self) -> None:
        for upload in self.inv.uploads:
            if upload.started_at is None:
                continue
            age = self.now - upload.started_at
            if age < self.upload_max_age:
                continue
            self._fault(
                k.UPLOAD_STALE,
                None,
                (f"upload {upload.upload_id}",),
                f"upload {upload.upload_id} started {age / 86400:.1f} days ago and never "
                f"finished ({upload.size} bytes)",
                (FolderPresent(upload.path),),
                reference=upload.upload_id,
                remedy=RemoveUpload(self.repo, upload.upload_id),
                storage_path=upload.path,
                bytes=upload.size,
                age_days=round(age / 86400, 2),
            )


def temp_file_candidate(
    storage: Storage, repository: str | None, path: str, now: float
) -> Candidate | None:
    """The `temp-file-stale` fault of the temp file at `path`, or None when it is young (a
    write may be under way), gone, or not a regular file (never read, never removed)."""
    match stat_state(storage, path):
        case FileInfo(size, mtime) if now - mtime >= layout.TEMP_MAX_AGE:
            age = now - mtime
            return Candidate(
                k.TEMP_FILE_STALE,
                repository,
                None,
                None,
                f"{path} is a temp file an interrupted write left {age / 3600:.1f} hours ago "
                f"({size} bytes)",
                (f"temp file {path.rpartition('/')[2]}",),
                (Present(path),),
                {"storage_path": path, "bytes": size},
                remedy=RemoveTempFile(repository, path),
            )
    return None


def link_outside_candidate(
    repository: str | None, link: str, message: str, path: tuple[str, ...] = ()
) -> Candidate:
    """The `link-outside-root` fault of the symlink at `link` (storage-relative)."""
    return Candidate(
        k.LINK_OUTSIDE_ROOT,
        repository,
        None,
        None,
        f"{message}: nothing behind it is read or repaired",
        path,
        (),
        {"storage_path": link},
    )


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(f"{folder}/")


def _meant(link: Link) -> str:
    """Why the link is malformed, when it only has whitespace around a digest."""
    if link.digest is not None or link.intended is None:
        return ""
    return f" (it names {link.intended} with whitespace around it; a link holds no newline)"


def _data_state(state: ManifestState) -> str:
    return {
        ManifestState.MISSING: "gone",
        ManifestState.DIGEST_MISMATCH: "corrupt",
        ManifestState.INVALID: "unreadable",
    }.get(state, state.value)
