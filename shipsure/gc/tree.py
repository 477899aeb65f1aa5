"""Distribution's storage as its garbage collector walks it: in its order, with its reads.

The collector walks folders depth first with each folder's names sorted
(registry/storage/driver/walk.go WalkFallback, `sort.Strings`), so the order in which it
meets repositories, revisions and layer links is a function of the names; shipsure walks the
same order because distribution v3's layer-link removal depends on it.

Reads go through the storage seam (`shipsure.storage.interface.Storage`) and are cached:
link files and `data` stats once per path, manifests once per digest (only their references
are kept). A path that cannot be read raises `StorageReadError`; the collector would stop on
it too, and callers turn it into an abort and a `check-error`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipsure import mediatypes as mt
from shipsure.storage import layout
from shipsure.storage.interface import (
    Entry,
    Storage,
    StorageError,
    StorageLinkOutsideError,
    StorageMissingError,
    StorageReadError,
)

# Manifest bytes held between two readers at most (a registry of ~10,000 manifests fits).
RAW_BUDGET = 16 << 20

PRESENT = "present"
MISSING = "missing"


@dataclass(frozen=True, slots=True)
class LinkFile:
    """One `link` file met by the walk: where it is and its raw content."""

    path: str
    folder_digest: str | None  # `<alg>:<folder name>` when the folder name is a digest
    raw: bytes


class GCTree:
    """Cached, ordered reads of one storage root."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        # digest -> bytes of its `data` file, or -1 when it is missing.
        self._sizes: dict[str, int] = {}
        self._tags: dict[str, tuple[list[str], dict[str, bytes | None]] | None] = {}
        self._links: dict[str, bytes | None] = {}
        # Folders whose every link file was read by `link_files`: a path under one that is
        # not cached is absent, without asking storage again.
        self._complete: dict[str, list[LinkFile]] = {}
        # Manifest bytes read once and kept for a second reader (`keep=True`), then dropped.
        self._raw: dict[str, bytes] = {}
        self._raw_bytes = 0
        self.raw_budget = RAW_BUDGET  # 0 when no second reader shares this tree

    # --- folders ------------------------------------------------------------------------

    def list_sorted(self, path: str) -> list[Entry] | None:
        """Entries of `path` sorted as Go sorts them, or None when the folder is absent."""
        try:
            entries = self.storage.list_dir(path)
        except StorageMissingError:
            return None
        return sorted(entries, key=lambda e: e.name)

    def repositories(self, marker: str) -> list[str]:
        """Repositories in walk order: every folder holding `marker` (`_layers` for v2.8,
        `_manifests` for v3; registry/storage/catalog.go handleRepository). Folders whose
        names start with `_` are not entered."""
        found: list[str] = []
        self._walk_repositories("", marker, found)
        return found

    def _walk_repositories(self, name: str, marker: str, found: list[str]) -> None:
        path = f"{layout.REPOSITORIES}/{name}" if name else layout.REPOSITORIES
        entries = self.list_sorted(path)
        for entry in entries or ():
            if entry.name == marker:
                if name:
                    found.append(name)
                continue
            if entry.name.startswith("_") or not entry.is_dir:
                continue
            self._walk_repositories(f"{name}/{entry.name}" if name else entry.name, marker, found)

    def link_files(self, base: str) -> list[LinkFile]:
        """Every `<base>/<alg>/<hex>/link` in walk order (a revisions or `_layers` folder)."""
        done = self._complete.get(base)
        if done is not None:
            return done
        out: list[LinkFile] = []
        for alg in self.list_sorted(base) or ():
            if not alg.is_dir:
                continue
            folder = f"{base}/{alg.name}"
            names = [e.name for e in self.list_sorted(folder) or () if e.is_dir]
            raws = self.storage.read_many(folder, names, "link", layout.LINK_READ_LIMIT)
            for name, raw in zip(names, raws, strict=True):
                if isinstance(raw, StorageMissingError):
                    continue
                path = f"{folder}/{name}/link"
                if isinstance(raw, StorageError):
                    raise StorageReadError(str(raw), path=path)
                digest = f"{alg.name}:{name}" if layout.is_digest_folder(alg.name, name) else None
                if digest is not None:
                    self._links[path] = raw
                out.append(LinkFile(path, digest, raw))
        self._complete[base] = out
        return out

    def link(self, path: str) -> bytes | None:
        """A link file's content, None when absent; raises StorageReadError."""
        if path in self._links:
            return self._links[path]
        # <base>/<alg>/<hex>/link: when <base> was read whole, an uncached link is absent.
        base = path.rsplit("/", 3)[0]
        if base in self._complete:
            return None
        try:
            raw: bytes | None = self.storage.read(path, layout.LINK_READ_LIMIT)
        except StorageMissingError:
            raw = None
        self._links[path] = raw
        return raw

    def tags(self, repository: str) -> tuple[list[str], dict[str, bytes | None]] | None:
        """(tag names as listed, sorted; each tag's `current/link` or None), or None when the
        repository has no `_manifests/tags` folder."""
        if repository in self._tags:
            return self._tags[repository]
        base = layout.tags_dir(repository)
        entries = self.list_sorted(base)
        result: tuple[list[str], dict[str, bytes | None]] | None = None
        if entries is not None:
            names = [e.name for e in entries]
            dirs = [e.name for e in entries if e.is_dir]
            raws = self.storage.read_many(base, dirs, "current/link", layout.LINK_READ_LIMIT)
            current: dict[str, bytes | None] = dict.fromkeys(names)
            for name, raw in zip(dirs, raws, strict=True):
                if isinstance(raw, StorageMissingError):
                    continue
                if isinstance(raw, StorageError):
                    raise StorageReadError(str(raw), path=f"{base}/{name}/current/link")
                current[name] = raw
            result = (names, current)
        self._tags[repository] = result
        return result

    def forget(self, repository: str) -> None:
        """Drop what was cached about one repository's folders (a walk that is done
        with it), so memory follows one repository, not the registry."""
        base = layout.repository_dir(repository)
        for sub in (f"{layout.MANIFESTS_DIR}/revisions", layout.LAYERS_DIR):
            for link in self._complete.pop(f"{base}/{sub}", ()):
                self._links.pop(link.path, None)
        self._tags.pop(repository, None)

    # --- the blob store -----------------------------------------------------------------

    def data_state(self, digest: str) -> str:
        """PRESENT or MISSING for the blob's `data` file (a folder there counts as missing,
        as in registry/storage/blobstore.go Stat); raises StorageReadError."""
        size = self._sizes.get(digest)
        if size is None:
            path = layout.blob_data(digest)
            try:
                info = self.storage.stat(path)
            except StorageLinkOutsideError:
                raise
            except StorageReadError:
                if not self._is_folder(path):
                    raise
                # blobstore.go Stat: "blob path should not be a directory" -> ErrBlobUnknown;
                # the sweep's Enumerate passes folders by too (observed on 2.8.2 and 3.x).
                info = None
            size = self._sizes[digest] = info.size if info is not None else -1
        return MISSING if size < 0 else PRESENT

    def _is_folder(self, path: str) -> bool:
        try:
            self.storage.list_dir(path)
        except StorageError:
            return False
        return True

    def size(self, digest: str) -> int:
        """Bytes of a blob's data (0 when absent or unreadable)."""
        try:
            self.data_state(digest)
        except StorageError:
            return 0
        return max(self._sizes.get(digest, 0), 0)

    def manifest_bytes(self, digest: str, *, keep: bool = False) -> bytes | None:
        """A manifest's data, None when missing; raises StorageReadError. `keep` holds the
        bytes for the next reader of the same digest (who gets them without a read)."""
        kept = self._raw.pop(digest, None)
        if kept is not None:
            self._raw_bytes -= len(kept)
            return kept
        try:
            raw = self.storage.read(layout.blob_data(digest), mt.MAX_MANIFEST_BYTES)
        except StorageMissingError:
            self._sizes[digest] = -1
            return None
        if keep and self._raw_bytes + len(raw) <= self.raw_budget:
            self._raw[digest] = raw
            self._raw_bytes += len(raw)
        self._sizes[digest] = len(raw)
        return raw

    def blob_digests(self) -> list[str]:
        """Every `<alg>:<hex>` folder of the blob store, in walk order."""
        out: list[str] = []
        for alg in self.list_sorted(layout.BLOBS) or ():
            if not alg.is_dir:
                continue
            base = f"{layout.BLOBS}/{alg.name}"
            for prefix in self.list_sorted(base) or ():
                if not prefix.is_dir:
                    continue
                for entry in self.list_sorted(f"{base}/{prefix.name}") or ():
                    if entry.is_dir:
                        out.append(f"{alg.name}:{entry.name}")
        return out
