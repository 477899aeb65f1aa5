"""Safe repairs of distribution's storage: the plan (pure). `apply` carries it out.

What may be repaired, and why it is safe:
- `link-revision`: re-create a missing revision link when the manifest data is present and
  its bytes hash to the digest. The registry then serves the manifest again (200).
- `link-layer`: re-create a missing `_layers` link when the global blob exists and a
  manifest of that repository references it.
- `remove-upload`: remove an unfinished upload older than the threshold, as distribution's
  own upload purging would.
- `remove-temp-file`: remove a temp file an interrupted write left beside a missing link or
  blob data, older than an hour (no write takes that long), as the writer would have.
- `remove-layer-link` (only when asked): remove a `_layers` link whose data is gone, so a
  blob-descriptor cache can no longer answer "200 with 0 bytes": an honest 404 instead.

Manifests and blobs are never deleted. `shipsure.checks.scan.apply` carries a plan out
through `shipsure.plan`: every action re-checks its precondition right before it acts and is
a no-op when already done, so applying a plan twice, or again after a crash half-way, is
safe. Writes are a temp file plus rename. Each action is journaled before and after it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shipsure.checks.scan.remedy import (
    RelinkLayer,
    RelinkRevision,
    RemoveDanglingLayerLink,
    RemoveTempFile,
    RemoveUpload,
)
from shipsure.findings import Finding
from shipsure.report.terminal import printable
from shipsure.storage import layout

LINK_REVISION = "link-revision"
LINK_LAYER = "link-layer"
REMOVE_UPLOAD = "remove-upload"
REMOVE_LAYER_LINK = "remove-layer-link"
REMOVE_TEMP_FILE = "remove-temp-file"


@dataclass(frozen=True, order=True)
class Action:
    op: str
    repository: str
    target: str  # a digest, or an upload id
    path: str  # the storage path written or removed
    because: str  # the finding kind that asked for it

    def describe(self) -> str:
        # Storage names (escaped for a terminal: a folder name can hold ESC or bytes that
        # are not UTF-8).
        text = f"{self.op:18} {self.repository} {self.target}  ({self.because}: {self.path})"
        return printable(text)


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
            case RemoveTempFile(repo, path):
                name = path.rpartition("/")[2]
                actions.add(Action(REMOVE_TEMP_FILE, repo or "", name, path, f.kind))
            case RemoveDanglingLayerLink(repo, digest) if remove_dangling_layer_links:
                path = layout.layer_link_dir(repo, digest)
                actions.add(Action(REMOVE_LAYER_LINK, repo, digest, path, f.kind))
    return sorted(actions)
