"""What could fix a scan finding, as typed data the repair planner matches on.

The walk decides a remedy from what it read (the manifest data verified, the blob data
present, the layer link there) and attaches it to the finding; `repair.plan_repairs` turns
remedies into actions and reads nothing else. A finding with no remedy is not repairable
here (lost data must come back from another copy).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RelinkRevision:
    """The revision link is gone; the manifest data is present and hashes to its digest."""

    repository: str
    digest: str


@dataclass(frozen=True, slots=True)
class RelinkLayer:
    """The `_layers` link is gone; the blob data is present and a manifest here lists it."""

    repository: str
    digest: str


@dataclass(frozen=True, slots=True)
class RemoveUpload:
    """An unfinished upload older than the threshold (distribution's purging would too)."""

    repository: str
    upload_id: str


@dataclass(frozen=True, slots=True)
class RemoveDanglingLayerLink:
    """A `_layers` link whose blob data is gone; removed only when asked."""

    repository: str
    digest: str


@dataclass(frozen=True, slots=True)
class RemoveTempFile:
    """A temp file an interrupted write left, older than `layout.TEMP_MAX_AGE`."""

    repository: str | None
    path: str


Remedy = RelinkRevision | RelinkLayer | RemoveUpload | RemoveDanglingLayerLink | RemoveTempFile
