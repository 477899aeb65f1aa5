"""Re-check a fault on storage before reporting it, so a race is never a finding.

A scan takes seconds to minutes while the registry keeps serving: a push writes blob data,
then the revision link, then the tag; a delete removes links. Reading a folder listing
at one moment and a file at the next can therefore show a state that never existed at any
single moment. Each candidate fault carries the facts it rests on ("this file is absent",
"this link still reads X"); they are read again, fresh, just before reporting, and a fault
whose facts changed is dropped. A real fault is stable, so it survives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shipsure.storage import layout
from shipsure.storage.interface import Storage, StorageError, StorageMissingError


@dataclass(frozen=True, slots=True)
class Absent:
    path: str


@dataclass(frozen=True, slots=True)
class Present:
    path: str


@dataclass(frozen=True, slots=True)
class LinkReads:
    """The link file still holds exactly these bytes."""

    path: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class SizeIs:
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class HashDiffers:
    """The file's content still hashes to something other than `digest`."""

    path: str
    digest: str


@dataclass(frozen=True, slots=True)
class FolderPresent:
    """The folder still exists, empty or not (a tag folder, an upload folder)."""

    path: str


Evidence = Absent | Present | LinkReads | SizeIs | HashDiffers | FolderPresent


def still_holds(storage: Storage, fact: Evidence) -> bool:
    """True when the fact is still true. A read error keeps the fault: it was seen once and
    nothing shows it went away (the error itself is reported elsewhere if it persists)."""
    try:
        match fact:
            case Absent(path):
                return storage.stat(path) is None
            case Present(path):
                return storage.stat(path) is not None
            case LinkReads(path, raw):
                try:
                    return storage.read(path, layout.LINK_READ_LIMIT) == raw
                except StorageMissingError:
                    return False
            case SizeIs(path, size):
                info = storage.stat(path)
                return info is not None and info.size == size
            case HashDiffers(path, digest):
                algorithm, _, hex_ = digest.partition(":")
                try:
                    actual, _ = storage.hash_file(path, algorithm)
                except StorageMissingError:
                    return False
                return actual != hex_
            case FolderPresent(path):
                try:
                    storage.list_dir(path)  # an empty folder is still there
                except StorageMissingError:
                    return False
                return True
    except StorageError:
        return True
    return True  # pragma: no cover - every Evidence type is matched above


# Filesystems with coarse timestamps and S3 (LastModified in whole seconds, from the server's
# clock) make "how long ago" uncertain by about this much.
TIMESTAMP_SLACK = 1.0


def recently_changed(storage: Storage, evidence: tuple[Evidence, ...], window: float) -> bool:
    """True when any path the evidence rests on (or, for an absent path, its nearest folder)
    changed within `window` seconds (plus TIMESTAMP_SLACK), or when the storage cannot tell:
    such a fault may be a push or delete still in progress. Older evidence is settled: every
    write of the operation that could change it would have happened already."""
    now = time.time()
    for fact in evidence:
        try:
            changed = storage.changed_at(fact.path)
        except StorageError:
            return True
        if changed is None or now - changed < window + TIMESTAMP_SLACK:
            return True
    return False
