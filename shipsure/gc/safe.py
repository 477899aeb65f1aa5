"""A correct mark-and-sweep for distribution storage (2.8 and 3.x layouts): the plan, and the
writer `shipsure.plan.apply` carries it out with.

Mark, per repository: every tag's `current/link` (read leniently: a link with a trailing
newline still names what the tag means) -> that manifest -> everything its `References()`
lists (children of indexes, nested; config and every layer, foreign ones included) -> the
`subject` of a kept referrer, and every manifest of the repository whose `subject` is kept
(signatures, SBOMs). Blob digests are marked globally, as the registry shares blobs.

Never guessed: a repository without a `_manifests/tags` folder keeps every revision; a kept
manifest whose data is missing or does not parse has unknown
references, so every blob its repository links is kept. Blobs and revision links younger
than `min_age` are kept (a push may be in flight).

Sweep, in an order that keeps every intermediate state safe to re-plan from:
1. `delete-revision`: a revision folder no kept tag, index or referrer reaches, with its
   entries in every tag's history (`tags/<tag>/index/...`);
2. `delete-blob`: a blob folder whose digest nothing kept marks;
3. `delete-layer-link`: a repository's `_layers` folder for a blob step 2 deletes.
Tags' `current/link` files are never touched, so marking after a crash marks the same set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from shipsure.gc import golang
from shipsure.gc.tree import MISSING, GCTree
from shipsure.plan import Action, AlreadyDone, Plan, Precondition, Ready, Refused
from shipsure.storage import layout
from shipsure.storage.interface import Storage, StorageMissingError, StorageReadError
from shipsure.storage.inventory import (
    ReadProblem,
    check_registry_root,
    discover_repositories,
    repositories_gone,
)

WRITER = "gc"
DELETE_REVISION = "delete-revision"
DELETE_TAG_HISTORY = "delete-tag-history"
DELETE_BLOB = "delete-blob"
DELETE_LAYER_LINK = "delete-layer-link"
DEFAULT_MIN_AGE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Outline:
    """What a manifest names: `manifests` (index entries), `blobs` (config and layers, as
    `References()` lists them) and its `subject`."""

    manifests: tuple[str, ...]
    blobs: tuple[str, ...]
    subject: str | None


def outline(raw: bytes) -> Outline | None:
    """The references of manifest bytes, or None when they do not unmarshal."""
    refs: list[str] | None = None
    for version in (2, 3):
        try:
            refs = golang.references(raw, version)
            break
        except golang.GoError:
            continue
    if refs is None:
        return None
    doc = json.loads(raw.decode("utf-8", "replace"))
    doc = doc if isinstance(doc, dict) else {}
    subject = doc.get("subject")
    subject_digest = subject.get("digest") if isinstance(subject, dict) else None
    wanted = [r for r in refs if golang.is_valid_digest(r)]
    if isinstance(doc.get("manifests"), list):
        return Outline(tuple(wanted), (), subject_digest)
    return Outline((), tuple(wanted), subject_digest)


@dataclass
class GCPlan:
    plan: Plan
    bytes_freed: int = 0
    kept_manifests: int = 0
    kept_blobs: int = 0
    problems: list[ReadProblem] = field(default_factory=list)


class _Marker:
    def __init__(self, tree: GCTree, now: float, min_age: float) -> None:
        self.tree = tree
        self.now = now
        self.min_age = min_age
        self.outlines: dict[str, Outline | None] = {}
        self.marked: set[str] = set()
        self.notes: list[str] = []

    def outline(self, digest: str) -> Outline | None:
        if digest not in self.outlines:
            raw = self.tree.manifest_bytes(digest)
            self.outlines[digest] = None if raw is None else outline(raw)
        return self.outlines[digest]

    def young(self, path: str) -> bool:
        info = self.tree.storage.stat(path)
        return info is not None and self.now - info.mtime < self.min_age


def _lenient_digest(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip()
    return text if golang.is_valid_digest(text) else None


def plan_gc(
    storage: Storage, *, min_age: float = DEFAULT_MIN_AGE_SECONDS, now: float | None = None
) -> GCPlan:
    """Plan a correct collection of `storage`. Raises StorageError when a path the plan
    depends on cannot be read (a plan made blind could delete what a tag needs)."""
    check_registry_root(storage)
    tree = GCTree(storage)
    marker = _Marker(tree, time.time() if now is None else now, min_age)
    problems: list[ReadProblem] = []
    repositories = discover_repositories(storage, problems)
    gone = repositories_gone(storage)
    if gone is not None:
        problems.append(gone)  # every blob would look unneeded: plan nothing
    if problems:
        first = problems[0]
        where = "" if first.path in first.message else f"{first.path}: "
        raise StorageReadError(f"cannot plan a collection: {where}{first.message}", path=first.path)
    revisions_to_delete: list[Action] = []
    kept_manifests = 0
    for repository in repositories:
        actions, kept = _mark_repository(marker, repository)
        revisions_to_delete.extend(actions)
        kept_manifests += kept
    # A blob pushed under another algorithm (sha512) lives under the canonical digest its
    # layer link names (`layout.link_serves`): a kept link keeps that data too.
    for repository in repositories:
        for link in tree.link_files(f"{layout.repository_dir(repository)}/{layout.LAYERS_DIR}"):
            if link.folder_digest in marker.marked:
                served = layout.link_serves(link.folder_digest, layout.parse_link(link.raw))
                if served is not None:
                    marker.marked.add(served)
    blobs: list[Action] = []
    freed = 0
    deleted_blobs: set[str] = set()
    for digest in tree.blob_digests():
        if digest in marker.marked:
            continue
        data = layout.blob_data(digest)
        info = storage.stat(data)
        if info is not None and marker.now - info.mtime < min_age:
            continue
        size = info.size if info is not None else 0
        freed += size
        deleted_blobs.add(digest)
        blobs.append(
            Action(
                DELETE_BLOB,
                layout.blob_dir(digest),
                "nothing kept references it",
                {"digest": digest, "size": size, "mtime": info.mtime if info else None},
            )
        )
    links: list[Action] = []
    for repository in repositories:
        base = f"{layout.repository_dir(repository)}/{layout.LAYERS_DIR}"
        for link in tree.link_files(base):
            if link.folder_digest is None:
                continue
            # The data a link serves: its own digest's, or for a blob pushed by its sha512
            # digest the sha256 digest it names (layout.link_serves).
            served = layout.link_serves(link.folder_digest, layout.parse_link(link.raw))
            data = served or link.folder_digest
            if data in deleted_blobs:
                links.append(
                    Action(
                        DELETE_LAYER_LINK,
                        layout.layer_link_dir(repository, link.folder_digest),
                        "its blob is deleted",
                        {"repository": repository, "digest": link.folder_digest, "data": data},
                    )
                )
    plan = Plan(WRITER, revisions_to_delete + blobs + links, marker.notes)
    return GCPlan(plan, freed, kept_manifests, len(marker.marked), problems)


def _mark_repository(marker: _Marker, repository: str) -> tuple[list[Action], int]:
    tree = marker.tree
    listed = tree.tags(repository)
    names, current = listed if listed is not None else ([], {})
    roots = [d for d in (_lenient_digest(current.get(n)) for n in names) if d]
    base = f"{layout.repository_dir(repository)}/{layout.MANIFESTS_DIR}/revisions"
    revisions = [link.folder_digest for link in tree.link_files(base) if link.folder_digest]
    revision_set = set(revisions)
    if listed is None and revisions:
        # No `_manifests/tags` folder at all is damage more often than intent (retention
        # removes tag folders, not the folder holding them): collect nothing here.
        marker.notes.append(
            f"{repository}: no _manifests/tags folder; every revision is kept (restore the "
            "tags, or delete the repository on purpose)"
        )
        roots = list(revisions)
    by_subject: dict[str, list[str]] = {}
    for digest in revisions:
        if tree.data_state(digest) == MISSING:
            continue
        got = marker.outline(digest)
        if got is not None and got.subject:
            by_subject.setdefault(got.subject, []).append(digest)
    kept: set[str] = set()
    unknown = False
    pending = list(roots)
    while pending:
        digest = pending.pop()
        if digest in kept:
            continue
        kept.add(digest)
        marker.marked.add(digest)
        got = marker.outline(digest) if tree.data_state(digest) != MISSING else None
        if got is None:
            unknown = True
            continue
        marker.marked.update(got.blobs)
        marker.marked.update(got.manifests)
        pending.extend(got.manifests)
        if got.subject and got.subject in revision_set:
            pending.append(got.subject)
        pending.extend(by_subject.get(digest, ()))
    if unknown:
        marker.notes.append(
            f"{repository}: a kept manifest's data is missing or unreadable; every blob the "
            "repository links is kept"
        )
        for link in tree.link_files(f"{layout.repository_dir(repository)}/{layout.LAYERS_DIR}"):
            if link.folder_digest:
                marker.marked.add(link.folder_digest)
    actions: list[Action] = []
    for digest in revisions:
        if digest in kept:
            continue
        if marker.young(layout.revision_link(repository, digest)):
            marker.marked.add(digest)
            got = marker.outline(digest) if tree.data_state(digest) != MISSING else None
            if got is not None:
                marker.marked.update(got.blobs + got.manifests)
            continue
        for name in names:
            history = layout.tag_index_link(repository, name, digest)
            if tree.storage.stat(history) is not None:
                actions.append(
                    Action(
                        DELETE_TAG_HISTORY,
                        history.rpartition("/")[0],
                        "the revision is deleted",
                        {"repository": repository, "tag": name, "digest": digest},
                    )
                )
        actions.append(
            Action(
                DELETE_REVISION,
                layout.revision_link_dir(repository, digest),
                "no tag, index or referrer reaches it",
                {"repository": repository, "digest": digest},
            )
        )
    return actions, len(kept)


class GCWriter:
    """Checks and carries out gc actions on storage; every `run` is one `remove_tree`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _exists(self, path: str) -> bool:
        try:
            self.storage.list_dir(path)
            return True
        except StorageMissingError:
            return False

    def check(self, action: Action) -> Precondition:
        facts: dict[str, Any] = dict(action.facts)
        if not self._exists(action.target):
            return AlreadyDone("already gone")
        if action.op in (DELETE_REVISION, DELETE_TAG_HISTORY):
            repository, digest = str(facts["repository"]), str(facts["digest"])
            listed = GCTree(self.storage).tags(repository)
            if listed is not None:
                for name, raw in listed[1].items():
                    if _lenient_digest(raw) == digest:
                        return Refused(f"tag {name} names {digest} now")
            return Ready()
        if action.op == DELETE_BLOB:
            info = self.storage.stat(f"{action.target}/data")
            if info is not None and facts.get("mtime") is not None and info.mtime != facts["mtime"]:
                return Refused("the blob was written again since the plan")
            return Ready()
        if action.op == DELETE_LAYER_LINK:
            data = str(facts.get("data") or facts["digest"])
            if self.storage.stat(layout.blob_data(data)) is not None:
                return Refused("the blob is there again")
            return Ready()
        return Refused(f"unknown operation {action.op}")

    def run(self, action: Action) -> None:
        self.storage.remove_tree(action.target)
