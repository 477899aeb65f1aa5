"""Scan repairs carried out through `shipsure.plan`: each planned `repair.Action` becomes a
`shipsure.plan.Action` on its storage path, with a precondition re-checked just before it
runs (`RepairWriter.check`) and one atomic step (`RepairWriter.run`).

Preconditions, first of all: no path on the way to the target may be a symlink that
resolves outside the storage root (the storage driver refuses such a write or delete too).
Then, per operation:
- `link-revision`: the link already names the digest -> done; else the manifest data must
  be present and hash to the digest.
- `link-layer`: the link already names the digest -> done; else the blob data must exist.
- `remove-upload`: gone -> done; else it must still be older than the threshold. The
  upload's data goes first and `startedat` last, so a removal cut short still reads as the
  same stale upload and the next run finishes it.
- `remove-layer-link`: gone -> done; else the blob data must still be missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from shipsure.checks.scan import repair
from shipsure.plan import Action, AlreadyDone, Plan, Precondition, Ready, Refused
from shipsure.storage import layout
from shipsure.storage.interface import Storage, StorageMissingError
from shipsure.storage.inventory import read_link, read_manifest, read_upload

WRITER = "scan-repair"
_LAST_IN_UPLOAD = "startedat"


def to_plan(actions: Iterable[repair.Action]) -> Plan:
    """The repairs as a `shipsure.plan.Plan`: target is the storage path changed; facts
    hold the repository and the digest or upload id."""
    return Plan(
        WRITER,
        [
            Action(a.op, a.path, a.because, {"repository": a.repository, "subject": a.target})
            for a in actions
        ],
    )


class RepairWriter:
    """`shipsure.plan.Writer` for storage repairs on one storage."""

    def __init__(self, storage: Storage, *, upload_max_age: float, now: float | None = None):
        self.storage = storage
        self.upload_max_age = upload_max_age
        self.now = time.time() if now is None else now

    def check(self, action: Action) -> Precondition:
        outside = self.storage.outside_root(action.target)
        if outside is not None:
            return Refused(outside)
        repo, subject = str(action.facts["repository"]), str(action.facts["subject"])
        if action.op in (repair.LINK_REVISION, repair.LINK_LAYER):
            link = read_link(self.storage, action.target)
            if link is not None and link.digest == subject:
                return AlreadyDone("the link names the digest")
            if action.op == repair.LINK_REVISION:
                m = read_manifest(self.storage, subject)
                if m.state != "ok":
                    return Refused(f"manifest data is {m.state}, not verified")
            elif self.storage.stat(layout.blob_data(subject)) is None:
                return Refused("blob data is gone")
            return Ready()
        if action.op == repair.REMOVE_UPLOAD:
            entries = self._entries(action.target)
            if entries is None:
                return AlreadyDone("upload is gone")
            if not entries:
                return Ready()  # an empty folder: what a cut-short removal leaves
            upload = read_upload(self.storage, repo, subject, [])
            if upload.started_at is None or self.now - upload.started_at < self.upload_max_age:
                return Refused("upload is not stale (any more)")
            return Ready()
        if action.op == repair.REMOVE_LAYER_LINK:
            if not self._entries(action.target):
                return AlreadyDone("link is gone")
            if self.storage.stat(layout.blob_data(subject)) is not None:
                return Refused("blob data is present again")
            return Ready()
        return Refused(f"unknown operation {action.op}")

    def run(self, action: Action) -> None:
        subject = str(action.facts["subject"])
        if action.op in (repair.LINK_REVISION, repair.LINK_LAYER):
            self.storage.write_atomic(action.target, layout.link_content(subject))
        elif action.op == repair.REMOVE_UPLOAD:
            for name in sorted(self._entries(action.target) or []):
                if name != _LAST_IN_UPLOAD:
                    self.storage.remove_tree(f"{action.target}/{name}")
            self.storage.remove_tree(action.target)
        elif action.op == repair.REMOVE_LAYER_LINK:
            self.storage.remove_tree(action.target)

    def _entries(self, folder: str) -> list[str] | None:
        try:
            return [e.name for e in self.storage.list_dir(folder)]
        except StorageMissingError:
            return None
