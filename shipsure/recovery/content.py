"""Fetching content from sources, verified: every byte is hashed against the digest asked
for (and counted against the descriptor's size) before anyone may push it.

Blobs are spooled to a temporary file (in memory up to a few MiB), so memory stays bounded
whatever the layer's size; manifests are small and kept as bytes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from shipsure import mediatypes as mt
from shipsure.model import Digest
from shipsure.recovery.interface import ContentSource, SourceError, SourceManifest

SPOOL_IN_MEMORY = 4 * 1024 * 1024


@dataclass
class VerifiedBlob:
    """A blob whose bytes hashed to `digest`: `content` is positioned at its start."""

    digest: Digest
    size: int
    content: IO[bytes]
    source: str

    def close(self) -> None:
        self.content.close()


@dataclass(frozen=True)
class Rejected:
    """A source held something under the digest, but the bytes did not verify."""

    source: str
    reason: str
    # The source could not be read (unreachable, unusable answer): not a bad copy, and
    # not a sign that it holds nothing either.
    unread: bool = False


def fetch_manifest(
    sources: Sequence[ContentSource], repository: str, digest: Digest, size: int | None = None
) -> tuple[SourceManifest, str] | list[Rejected] | None:
    """The first source's manifest whose bytes hash to `digest` (and match `size`), with
    the source's name; None when no source holds it; the rejections when only bad copies
    exist. `SourceError` from a source is a rejection too, so another may still serve."""
    rejected: list[Rejected] = []
    for source in sources:
        try:
            found = source.manifest(repository, digest)
        except SourceError as exc:
            rejected.append(Rejected(source.name, f"could not read: {exc}", unread=True))
            continue
        if found is None:
            continue
        reason = _manifest_problem(found.raw, digest, size)
        if reason:
            rejected.append(Rejected(source.name, reason))
            continue
        return found, source.name
    return rejected or None


def _manifest_problem(raw: bytes, digest: Digest, size: int | None) -> str:
    if len(raw) > mt.MAX_MANIFEST_BYTES:
        return f"manifest is over {mt.MAX_MANIFEST_BYTES} bytes"
    if not digest.matches(raw):
        return f"bytes hash to {Digest.of(raw, digest.algorithm)}, not {digest}"
    if size is not None and len(raw) != size:
        return f"manifest is {len(raw)} bytes, its parent says {size}"
    return ""


def fetch_blob(
    sources: Sequence[ContentSource], repository: str, digest: Digest, size: int
) -> VerifiedBlob | list[Rejected] | None:
    """The first source's copy of the blob that is exactly `size` bytes hashing to
    `digest`; None when no source holds it; the rejections when only bad copies exist."""
    rejected: list[Rejected] = []
    for source in sources:
        found = _fetch_one(source, repository, digest, size)
        if isinstance(found, VerifiedBlob):
            return found
        if found is not None:
            rejected.append(found)
    return rejected or None


class _Spool:
    """Hashes and keeps at most `size` + 1 bytes handed over by a source."""

    def __init__(self, digest: Digest, size: int) -> None:
        # Handed to the caller in a VerifiedBlob, which closes it.
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self.hasher = digest.hasher()
        self.size = size
        self.count = 0

    def write(self, piece: bytes) -> None:
        room = self.size + 1 - self.count
        if room <= 0:
            return
        piece = piece[:room]
        self.hasher.update(piece)
        self.file.write(piece)
        self.count += len(piece)


def _fetch_one(
    source: ContentSource, repository: str, digest: Digest, size: int
) -> VerifiedBlob | Rejected | None:
    spool = _Spool(digest, size)
    try:
        held = source.copy_blob(repository, digest, size, spool.write)
    except SourceError as exc:
        spool.file.close()
        return Rejected(source.name, f"could not read: {exc}", unread=True)
    reason = ""
    if not held:
        spool.file.close()
        return None
    if spool.count > size:
        reason = f"copy is longer than {size} bytes"
    elif spool.count < size:
        reason = f"copy ended after {spool.count} of {size} bytes"
    elif spool.hasher.hexdigest() != digest.hex:
        reason = f"bytes hash to {digest.algorithm}:{spool.hasher.hexdigest()}"
    if reason:
        spool.file.close()
        return Rejected(source.name, reason)
    spool.file.seek(0)
    return VerifiedBlob(digest, size, spool.file, source.name)
