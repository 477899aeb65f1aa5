"""The content-source seam: where a restore copies missing content from.

A source holds content by digest: another registry (same repository names, or under a
prefix), an OCI image layout on disk, a `docker save` archive. Callers never trust a
source's bytes: `recovery/content.py` hashes everything a source hands over against the
digest asked for before anything is pushed, so a source only has to say what it holds.

Three answers, never confused: the bytes (`copy_blob` returns True / `manifest` returns a
`SourceManifest`), "not held here" (False / None: the plan looks elsewhere or asks for a
rebuild), and "could not read" (`SourceError`: the plan says so and pushes nothing for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shipsure.errors import CouldNotRunError
from shipsure.model import Digest


class SourceError(CouldNotRunError):
    """The source could not be read (unreachable, unreadable file, malformed layout)."""


@dataclass(frozen=True)
class SourceManifest:
    """A manifest's bytes exactly as the source holds them (unverified)."""

    raw: bytes
    media_type: str | None  # Content-Type or the layout's descriptor; None when unknown


# Called with consecutive pieces of a blob; a source may stop early once `limit` + 1
# bytes were delivered (so a hostile source cannot exhaust the disk).
Sink = Callable[[bytes], None]


class ContentSource(Protocol):
    """One place content can come from. Repositories are the target's names: a source
    maps them to its own (a prefix, or none at all for a layout or an archive)."""

    @property
    def name(self) -> str:
        """How messages name it: `registry mirror:5000/backup`, `oci:/srv/layout`, ..."""
        ...

    @property
    def preserves_manifests(self) -> bool:
        """False when the source cannot hold manifests as pushed (a legacy `docker save`
        archive): a plan then names what only a rebuild brings back."""
        ...

    def resolve_tag(self, repository: str, tag: str) -> Digest | None:
        """The manifest digest `tag` names here; None when the source has no such tag."""
        ...

    def manifest(self, repository: str, digest: Digest) -> SourceManifest | None:
        """The manifest with this digest (at most 4 MiB), or None when not held."""
        ...

    def has_blob(self, repository: str, digest: Digest) -> bool:
        """Whether the source claims the blob (cheap: HEAD, stat, index look-up).
        A claim is not trusted: `copy_blob` still verifies every byte."""
        ...

    def copy_blob(self, repository: str, digest: Digest, limit: int, sink: Sink) -> bool:
        """Hand the blob's bytes to `sink`; False when not held. Stops after `limit` + 1
        bytes."""
        ...

    def close(self) -> None: ...
