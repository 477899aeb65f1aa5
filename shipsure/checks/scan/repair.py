"""Safe repairs of distribution's storage: plan (pure), then apply (journaled, idempotent).

What may be repaired, and why it is safe:
- `link-revision`: re-create a missing revision link when the manifest data is present and
  its bytes hash to the digest. The registry then serves the manifest again (200).
- `link-layer`: re-create a missing `_layers` link when the global blob exists and a
  manifest of that repository references it.
- `remove-upload`: remove an unfinished upload older than the threshold, as distribution's
  own upload purging would.
- `remove-layer-link` (only when asked): remove a `_layers` link whose data is gone, so a
  blob-descriptor cache can no longer answer "200 with 0 bytes": an honest 404 instead.

Manifests and blobs are never deleted. Every action re-checks its precondition right before
it acts and is a no-op when already done, so applying a plan twice, or again after a crash
half-way, is safe. Writes are a temp file plus rename. Each action is journaled before and
after it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TextIO

from shipsure.checks.scan.remedy import (
    RelinkLayer,
    RelinkRevision,
    RemoveDanglingLayerLink,
    RemoveUpload,
)
from shipsure.findings import Finding
from shipsure.storage import layout
from shipsure.storage.interface import Storage, StorageError, StorageMissingError
from shipsure.storage.inventory import ManifestState, read_link, read_manifest, read_upload

LINK_REVISION = "link-revision"
LINK_LAYER = "link-layer"
REMOVE_UPLOAD = "remove-upload"
REMOVE_LAYER_LINK = "remove-layer-link"


@dataclass(frozen=True, order=True)
class Action:
    op: str
    repository: str
    target: str  # a digest, or an upload id
    path: str  # the storage path written or removed
    because: str  # the finding kind that asked for it

    def describe(self) -> str:
        return f"{self.op:18} {self.repository} {self.target}  ({self.because}: {self.path})"


@dataclass
class Outcome:
    action: Action
    result: str  # done | already-done | skipped | failed
    reason: str = ""


def plan_repairs(
    findings: Iterable[Finding],
    *,
    remove_dangling_layer_links: bool = False,
) -> list[Action]:
    """The actions that would fix what can be fixed safely, sorted and de-duplicated.

    Reads only each finding's typed `remedy` (checks/scan/remedy.py), set by the walk from
    what it read on storage; findings without one (e.g. from a merged JSON report) plan
    nothing."""
    actions: set[Action] = set()
    for f in findings:
        match f.remedy:
            case RelinkRevision(repo, digest):
                path = layout.revision_link(repo, digest)
                actions.add(Action(LINK_REVISION, repo, digest, path, f.kind))
            case RelinkLayer(repo, digest):
                actions.add(
                    Action(LINK_LAYER, repo, digest, layout.layer_link(repo, digest), f.kind)
                )
            case RemoveUpload(repo, upload_id):
                path = layout.upload_dir(repo, upload_id)
                actions.add(Action(REMOVE_UPLOAD, repo, upload_id, path, f.kind))
            case RemoveDanglingLayerLink(repo, digest) if remove_dangling_layer_links:
                path = layout.layer_link_dir(repo, digest)
                actions.add(Action(REMOVE_LAYER_LINK, repo, digest, path, f.kind))
    return sorted(actions)


class Journal:
    """Append-only JSON lines: one `start` and one outcome line per action, fsync'd."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def record(self, state: str, action: Action, reason: str = "") -> None:
        entry = {"time": time.time(), "state": state, **asdict(action)}
        if reason:
            entry["reason"] = reason
        self.stream.write(json.dumps(entry, sort_keys=True) + "\n")
        self.stream.flush()
        # A StringIO (in tests) has no file descriptor to sync.
        with contextlib.suppress(OSError, ValueError):
            os.fsync(self.stream.fileno())


def apply_plan(
    storage: Storage,
    actions: Iterable[Action],
    journal: Journal,
    *,
    upload_max_age: float,
    now: float | None = None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for action in actions:
        journal.record("start", action)
        try:
            outcome = _apply_one(storage, action, upload_max_age, now or time.time())
        except StorageError as exc:
            outcome = Outcome(action, "failed", str(exc))
        journal.record(outcome.result, action, outcome.reason)
        outcomes.append(outcome)
    return outcomes


def _apply_one(storage: Storage, action: Action, upload_max_age: float, now: float) -> Outcome:
    repo, target = action.repository, action.target
    if action.op == LINK_REVISION:
        link = read_link(storage, action.path)
        if link is not None and link.digest == target:
            return Outcome(action, "already-done")
        m = read_manifest(storage, target)
        if m.state is not ManifestState.OK:
            return Outcome(action, "skipped", f"manifest data is {m.state}, not verified")
        storage.write_atomic(action.path, layout.link_content(target))
        return Outcome(action, "done")
    if action.op == LINK_LAYER:
        link = read_link(storage, action.path)
        if link is not None and link.digest == target:
            return Outcome(action, "already-done")
        if storage.stat(layout.blob_data(target)) is None:
            return Outcome(action, "skipped", "blob data is gone")
        storage.write_atomic(action.path, layout.link_content(target))
        return Outcome(action, "done")
    if action.op == REMOVE_UPLOAD:
        if not _exists(storage, action.path):
            return Outcome(action, "already-done")
        upload = read_upload(storage, repo, target, [])
        if upload.started_at is None or now - upload.started_at < upload_max_age:
            return Outcome(action, "skipped", "upload is not stale (any more)")
        storage.remove_tree(action.path)
        return Outcome(action, "done")
    if action.op == REMOVE_LAYER_LINK:
        if not _exists(storage, action.path):
            return Outcome(action, "already-done")
        if storage.stat(layout.blob_data(target)) is not None:
            return Outcome(action, "skipped", "blob data is present again")
        storage.remove_tree(action.path)
        return Outcome(action, "done")
    return Outcome(action, "skipped", f"unknown operation {action.op}")


def _exists(storage: Storage, folder: str) -> bool:
    try:
        return bool(storage.list_dir(folder))
    except StorageMissingError:
        return False
