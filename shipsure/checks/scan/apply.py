"""Scan repairs carried out through `shipsure.plan`: each planned `repair.Action` becomes a
`shipsure.plan.Action` on its storage path, with a precondition re-checked just before it
runs (`RepairWriter.check`) and one atomic step (`RepairWriter.run`).

Preconditions, first of all: no path on the way to the target, or to the blob data the
action relies on, may be a symlink that resolves outside the storage root (the storage
driver refuses such a write or delete too).
Then, per operation:
- `link-revision`: the link already names the digest -> done; else the manifest data must
  be present and hash to the digest.
- `link-layer`: the link already names the digest -> done; else the blob data must exist.
- `remove-upload`: gone -> done; else it must still be older than the threshold. The
  upload's data goes first and `startedat` last, so a removal cut short still reads as the
  same stale upload and the next run finishes it.
- `remove-layer-link`: gone -> done; else the blob data must still be missing.
- `remove-temp-file`: gone -> done; else it must still be a regular file (not a link
  leaving the root) with a temp file's name, unchanged for `layout.TEMP_MAX_AGE`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from shipsure.checks.scan import repair
from shipsure.plan import Action, AlreadyDone, Plan, Precondition, Ready, Refused
from shipsure.storage import layout
from shipsure.storage.interface import Storage, StorageError, StorageMissingError
from shipsure.storage.inventory import ManifestState, read_link, read_manifest, read_upload

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
        if action.op == repair.REMOVE_TEMP_FILE:
            return self._check_temp_file(action.target)
        if action.op != repair.REMOVE_UPLOAD:
            # The evidence (the manifest's or blob's data) must be read inside the root too.
            outside = self.storage.outside_root(layout.blob_data(subject))
            if outside is not None:
                return Refused(f"its evidence lies outside: {outside}")
        if action.op in (repair.LINK_REVISION, repair.LINK_LAYER):
            link = read_link(self.storage, action.target)
            if link is not None and link.digest == subject:
                return AlreadyDone("the link names the digest")
            if action.op == repair.LINK_REVISION:
                m = read_manifest(self.storage, subject)
                if m.state is not ManifestState.OK:
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
            # The data the link serves: its own digest's, or another algorithm's it names.
            link = read_link(self.storage, layout.layer_link(repo, subject))
            served = (link.serves(subject) if link is not None else None) or subject
            if self.storage.stat(layout.blob_data(served)) is not None:
                return Refused("blob data is present again")
            return Ready()
        return Refused(f"unknown operation {action.op}")

    def _check_temp_file(self, path: str) -> Precondition:
        if not layout.is_temp_name(path.rpartition("/")[2]):
            return Refused("not a temp file name")
        try:
            info = self.storage.stat(path)
        except StorageError as exc:  # a folder, FIFO, device, or a link leaving the root
            return Refused(f"not a regular file inside the root: {exc}")
        if info is None:
            return AlreadyDone("temp file is gone")
        if self.now - info.mtime < layout.TEMP_MAX_AGE:
            return Refused("temp file changed recently: a write may be under way")
        return Ready()

    def run(self, action: Action) -> None:
        subject = str(action.facts["subject"])
        if action.op in (repair.LINK_REVISION, repair.LINK_LAYER):
            self.storage.write_atomic(action.target, layout.link_content(subject))
        elif action.op == repair.REMOVE_UPLOAD:
            for name in sorted(self._entries(action.target) or []):
                if name != _LAST_IN_UPLOAD:
                    self.storage.remove_tree(f"{action.target}/{name}")
            self.storage.remove_tree(action.target)
        elif action.op in (repair.REMOVE_LAYER_LINK, repair.REMOVE_TEMP_FILE):
            self.storage.remove_tree(action.target)

    def _entries(self, folder: str) -> list[str] | None:
        try:
            return [e.name for e in self.storage.list_dir(folder)]
        except StorageMissingError:
            return None
