"""Retention on distribution storage: tags read from disk, tag folders removed.

Creation time of a tag: the newest `created` of the image configs in its tree; else the
modification time of its `current/link` (when it was pushed). Deleting a tag removes its
`_manifests/tags/<tag>` folder only; `shipsure gc` then collects what nothing keeps.
"""

from __future__ import annotations

import datetime as dt
import json

from shipsure.gc.reach import BLOB, Reachability
from shipsure.gc.tree import GCTree
from shipsure.plan import Action, AlreadyDone, Precondition, Ready, Refused
from shipsure.retention.plan import DELETE_TAG, TagImage
from shipsure.storage import layout
from shipsure.storage.interface import Storage, StorageError, StorageMissingError
from shipsure.storage.inventory import ReadProblem, discover_repositories

CONFIG_READ_LIMIT = 1 << 20


def parse_created(raw: bytes) -> float | None:
    """An image config's `created` (RFC 3339) as seconds since the epoch, or None."""
    try:
        doc = json.loads(raw)
        text = doc.get("created") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return None
        # Go writes nanoseconds; fromisoformat takes at most microseconds.
        head, dot, rest = text.partition(".")
        if dot:
            digits = "".join(c for c in rest if c.isdigit())
            rest = digits[:6] + rest[len(digits) :]
            text = f"{head}.{rest}"
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, TypeError):
        return None


def read_images(storage: Storage) -> tuple[list[TagImage], list[ReadProblem]]:
    """Every tag of the storage with its tree (reach's view, referrers included)."""
    tree = GCTree(storage)
    reach = Reachability(tree)
    problems: list[ReadProblem] = []
    repositories = discover_repositories(storage, problems)
    images: list[TagImage] = []
    for t in reach.all_tags(repositories):
        if t.digest is None:
            continue
        created: float | None = None
        blobs: dict[str, int] = {}
        manifests = set()
        for need in t.needs:
            if need.kind == BLOB:
                blobs[need.digest] = tree.size(need.digest)
                if need.path[-1].startswith("config ") and not need.referrer:
                    got = _config_created(storage, need.digest)
                    if got is not None and (created is None or got > created):
                        created = got
            else:
                manifests.add(need.digest)
                blobs[need.digest] = tree.size(need.digest)
        if created is None:
            info = _stat(storage, layout.tag_current_link(t.repository, t.tag))
            created = info
        images.append(TagImage(t.repository, t.tag, t.digest, created, frozenset(manifests), blobs))
    problems.extend(ReadProblem(p, m) for p, m in reach.problems)
    return images, problems


def _config_created(storage: Storage, digest: str) -> float | None:
    try:
        return parse_created(storage.read(layout.blob_data(digest), CONFIG_READ_LIMIT))
    except StorageError:
        return None


def _stat(storage: Storage, path: str) -> float | None:
    try:
        info = storage.stat(path)
    except StorageError:
        return None
    return info.mtime if info is not None else None


class StorageTagWriter:
    """Removes tag folders; refuses when the tag moved since the plan."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def check(self, action: Action) -> Precondition:
        if action.op != DELETE_TAG:
            return Refused(f"{action.op} needs the registry API")
        repository, tag = str(action.facts["repository"]), str(action.facts["tag"])
        try:
            raw = self.storage.read(layout.tag_current_link(repository, tag), 256)
        except StorageMissingError:
            return AlreadyDone("the tag no longer resolves")
        if raw.decode("utf-8", "replace").strip() != action.facts["digest"]:
            return Refused("the tag moved since the plan")
        return Ready()

    def run(self, action: Action) -> None:
        # The current link goes first: a crash after it leaves a tag that no longer
        # resolves, which the re-run finishes (the folder is removed as already done).
        repository, tag = str(action.facts["repository"]), str(action.facts["tag"])
        self.storage.remove_tree(layout.tag_current_link(repository, tag))
        self.storage.remove_tree(layout.tag_dir(repository, tag))
