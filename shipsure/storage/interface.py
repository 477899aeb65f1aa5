"""The storage seam: how shipsure reads (and, for repairs, writes) distribution's storage.

Checks depend on `Storage` only; `filesystem.py` and `s3.py` implement it. Paths are
relative to the storage root and always use `/` (they are S3 keys on S3), e.g.
`docker/registry/v2/blobs/sha256/ab/ab12.../data`; `layout.py` does the path math.

Errors tell "it is not there" (`StorageMissingError`) apart from "we could not read it"
(`StorageReadError`: permission denied, I/O error, network). Only the first may ever become
a "missing" finding; the second is a `check-error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shipsure.errors import CouldNotRunError


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a folder listing."""

    name: str
    is_dir: bool  # a folder, or a symbolic link to one
    is_link: bool = False  # a symbolic link (distribution never makes any)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file that is there: its size (bytes) and modification time."""

    size: int
    mtime: float  # seconds since the epoch


# A read's outcome as data, matched with `match`: the file is there (FileInfo, or Hashed for
# a hash), it is not (Missing), or it could not be read (Unreadable). Only Missing may ever
# become a "missing" finding; Unreadable is a `check-error`.


@dataclass(frozen=True, slots=True)
class Missing:
    """The path does not exist (or vanished while we looked)."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The path may exist but could not be read; `why` says what the storage answered."""

    why: str
    link: str = ""  # set when a symlink leaving the storage root was in the way


@dataclass(frozen=True, slots=True)
class Hashed:
    """A file's content hashed: hex digest in the asked algorithm, and bytes read."""

    hex: str
    size: int


FileState = FileInfo | Missing | Unreadable
HashState = Hashed | Missing | Unreadable


class StorageError(CouldNotRunError):
    """Base of storage failures; `path` is the storage-relative path involved."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class StorageMissingError(StorageError):
    """The path does not exist (or vanished while we looked)."""


class StorageReadError(StorageError):
    """The path may exist but could not be read: permission, I/O error, network."""


class StorageLinkOutsideError(StorageReadError):
    """A read refused: `link` (storage-relative) is a symlink on the way to `path` that
    resolves outside the storage root. Nothing behind it is read: its content is not the
    registry's (distribution never creates links) and may be anything on the host."""

    def __init__(self, message: str, *, path: str = "", link: str = "") -> None:
        super().__init__(message, path=path)
        self.link = link


class StorageWriteError(StorageError):
    """A repair could not write or remove a path."""


class StorageOutsideRootError(StorageWriteError):
    """A write or delete refused: `link` (storage-relative) is a symlink on the way to
    `path` that resolves outside the storage root (see `shipsure.storage.confine`)."""

    def __init__(self, message: str, *, path: str = "", link: str = "") -> None:
        super().__init__(message, path=path)
        self.link = link


class Storage(Protocol):
    """Distribution's storage as a tree of folders and files.

    Every method is safe to call from several threads at once.
    """

    # Capabilities: what callers may do with this storage, so none asks for its class.
    # True when reads are local and interpreter-bound, so work pays off in worker processes
    # (which must be able to receive this storage pickled); False when reads wait on the
    # network and threads are the cheaper way to overlap them.
    can_fork_workers: bool
    # A local folder holding the layout, for tools that read the files directly (the blob
    # hasher process); None when there is none (S3).
    local_root: str | None

    def describe(self) -> str:
        """Where this storage is, for messages and reports (no credentials)."""
        ...

    def check_root(self) -> None:
        """Raise StorageError when the root itself cannot be read at all, BadInputError
        when it is not a folder (a file given for the root)."""
        ...

    def list_dir(self, path: str) -> list[Entry]:
        """Names directly under `path`. Raises StorageMissingError when absent.

        Every read (listing, read, read_many, stat, hash_file, changed_at) raises
        StorageLinkOutsideError, reading nothing, when a symlink on the way to the path
        resolves outside the storage root; links that stay inside are followed."""
        ...

    def read(self, path: str, limit: int) -> bytes:
        """At most `limit` + 1 bytes of a file (so callers can tell "too big")."""
        ...

    def read_many(
        self, folder: str, names: list[str], suffix: str, limit: int
    ) -> list[bytes | StorageError]:
        """`read(f"{folder}/{name}/{suffix}", limit)` for each name, in order; a failure is
        returned in that name's place (StorageMissingError when absent), never raised.
        Each name must be a plain folder (not an `is_link` entry): `folder` and the last
        component are checked against links leaving the root, the names are not."""
        ...

    def stat(self, path: str) -> FileInfo | None:
        """Size and modification time of a file, or None when it does not exist."""
        ...

    def changed_at(self, path: str) -> float | None:
        """When `path` last changed (seconds since the epoch): a file's or folder's
        modification time, or for an absent path that of the nearest folder above it that
        exists (removing or creating an entry changes its folder). None when the storage
        cannot tell (S3 has no folders). Raises StorageError when unreadable."""
        ...

    def hash_file(self, path: str, algorithm: str, size_hint: int = -1) -> tuple[str, int]:
        """Stream a file through a hash: (hex digest, bytes read). Never loads it whole.

        `size_hint` is the size the caller expects (from a stat); it only saves reads."""
        ...

    def outside_root(self, path: str) -> str | None:
        """Why acting on `path` would leave the storage root (a symlink on the way that
        resolves outside it), or None. Object stores have no links: always None."""
        ...

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write a small file so readers see either nothing or all of it. Raises
        StorageOutsideRootError, writing nothing, when `outside_root(path)` says why not."""
        ...

    def remove_tree(self, path: str) -> None:
        """Remove a file or folder and everything under it; absent is not an error. Raises
        StorageOutsideRootError, removing nothing, when `outside_root(path)` says why not."""
        ...
