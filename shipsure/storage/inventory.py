"""What is on disk: repositories, tags, revisions, layer links, uploads, blobs, manifests.

A reusable read-only model of distribution's storage for checks that need the whole picture
(scan, garbage-collection prediction, restore). Reading never fails a whole repository for
one bad file: every unreadable path is recorded in `errors` and the walk goes on, so callers
can report "could not check" for exactly that path.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from shipsure import mediatypes as mt
from shipsure.errors import BadInputError, ManifestError
from shipsure.storage import layout
from shipsure.storage.digests import BoundedCache
from shipsure.storage.graph import ManifestNode, node_from_bytes
from shipsure.storage.interface import (
    Entry,
    FileInfo,
    FileState,
    Hashed,
    HashState,
    Missing,
    Storage,
    StorageError,
    StorageLinkOutsideError,
    StorageMissingError,
    Unreadable,
)


@dataclass(frozen=True, slots=True)
class Link:
    """A link file as read. `digest` is set only when the content is exactly a digest."""

    path: str
    digest: str | None
    raw: bytes

    def points_to(self, digest: str) -> bool:
        return self.digest == digest

    def serves(self, digest: str) -> str | None:
        """The digest whose data this `_layers` link of `digest` serves: `digest` itself, or
        for a blob pushed under another algorithm (a `sha512:` digest) the canonical digest
        the registry stored the bytes under and wrote into the link (distribution
        linkedblobstore.go linkBlob; observed on 2.8.2 and 3.x: `_layers/sha512/<hex>/link`
        holds `sha256:<hex>`, data under blobs/sha256, GET by the sha512 digest 200).
        None when the link is malformed (another digest of the same algorithm, or no
        digest)."""
        return layout.link_serves(digest, self.digest)

    @property
    def intended(self) -> str | None:
        """The digest, or for a malformed link the one it was meant to hold (a link ending in
        a newline, CRLF or spaces, as hand-written links do), or None."""
        return self.digest if self.digest is not None else layout.intended_digest(self.raw)


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    path: str
    started_at: float | None  # from `startedat`, else the data file's mtime, else None
    size: int  # bytes in the upload's data file so far


# OCI distribution-spec "referrers tag schema": `<alg>-<hex>`, cut to a tag's 128 characters.
_REFERRERS_TAG = re.compile(r"sha(?:256|384|512)-[0-9a-f]{64,121}", re.ASCII)


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """A path that could not be read; becomes a `check-error`, never "missing"."""

    path: str
    message: str
    # Set when the reason is a symlink leaving the storage root: the link's storage path
    # (a `link-outside-root` finding of its own, not a check-error).
    link: str = ""

    @classmethod
    def of(cls, path: str, exc: StorageError) -> ReadProblem:
        return cls(path, str(exc), getattr(exc, "link", ""))


@dataclass
class RepositoryInventory:
    name: str
    # Keyed by the digest of the folder the link sits in (`<alg>:<hex folder name>`).
    revisions: dict[str, Link] = field(default_factory=dict)
    layers: dict[str, Link] = field(default_factory=dict)
    tags: dict[str, Link | None] = field(default_factory=dict)  # None: no current/link
    # Tag history links (`tags/<tag>/index/<alg>/<hex>/link`) that do not hold exactly the
    # digest of their folder, as (tag, folder digest, link); sound ones are not kept.
    bad_history: list[tuple[str, str, Link]] = field(default_factory=list)
    # Earlier values of referrers fallback tags (`sha256-<hex>`): indexes a client replaced
    # when it attached or deleted a referrer, and left behind untagged (OCI distribution-spec
    # "Pushing Manifests with Subject": removing the old index is left to the client).
    superseded_referrer_indexes: set[str] = field(default_factory=set)
    uploads: list[Upload] = field(default_factory=list)
    errors: list[ReadProblem] = field(default_factory=list)
    # Folders under revisions/ and _layers/ whose names are not digests (never served).
    stray: list[str] = field(default_factory=list)
    # Temp files of interrupted writes (`layout.is_temp_name`) in link folders whose link is
    # missing: a write cut short before its rename leaves exactly that.
    temp_files: list[str] = field(default_factory=list)

    def uncertain(self, path: str) -> bool:
        """Whether `path`, or a folder above it, could not be read: its absence from this
        inventory then proves nothing (no "missing" finding may rest on it)."""
        unread = {p.path for p in self.errors}
        while path:
            if path in unread:
                return True
            path = path.rpartition("/")[0]
        return False


# --- discovery ---------------------------------------------------------------------------


def check_registry_root(storage: Storage) -> None:
    """Raise unless `storage` is a registry's rootdirectory (the folder holding
    `docker/registry/v2`) or an empty folder (a registry nobody pushed to yet).

    Every command reading storage asks this first: a root one level too high or too low
    reads as a registry with no repositories, and "nothing found" there would be a silent
    wrong answer. StorageError (exit 3) when the root cannot be read; BadInputError (exit 2)
    when it holds something else, naming the folder to pass instead when one is near."""
    storage.check_root()  # raises StorageError (exit 3) when the root cannot be read
    try:
        storage.list_dir(layout.V2)
    except StorageLinkOutsideError:
        return  # every read below stops at that link: it is reported as a finding
    except StorageMissingError:
        try:
            entries = storage.list_dir("")
        except StorageError:
            entries = []
        if entries:
            raise BadInputError(
                f"storage root {storage.describe()}: no {layout.V2} inside; pass the "
                f"registry's rootdirectory (the folder that holds `docker/`){_hint(storage)}"
            ) from None


def _hint(storage: Storage) -> str:
    """Where the rootdirectory may be, for a root given one or more levels off."""
    described = storage.describe().rstrip("/")
    parts = described.split("/")
    # Given a folder inside the layout (`.../docker`, `.../docker/registry/v2/...`).
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] == "docker" and (i + 1 == len(parts) or parts[i + 1] == "registry"):
            return f", which looks like {'/'.join(parts[:i]) or '/'}"
    # Given the folder above it.
    try:
        below = [e.name for e in storage.list_dir("") if e.is_dir and not e.is_link]
    except StorageError:
        return ""
    for name in sorted(below)[:100]:
        try:
            storage.list_dir(f"{name}/{layout.V2}")
        except StorageError:
            continue
        return f", which looks like {described}/{name}"
    return ""


def repositories_gone(storage: Storage) -> ReadProblem | None:
    """A problem when the blob store holds blobs but `repositories/` is absent (or not a
    folder): damage, never "no repository needs any blob". (A registry nobody pushed to
    has neither; a push makes `repositories/<name>/_layers` before its first blob.)"""
    try:
        storage.list_dir(layout.REPOSITORIES)
        return None
    except StorageMissingError:
        pass
    except StorageError:
        return None  # unreadable: discovery reports it
    try:
        if not storage.list_dir(layout.BLOBS):
            return None
    except StorageError:
        return None
    return ReadProblem(
        layout.REPOSITORIES,
        "absent or not a folder while the blob store holds blobs: which blobs the "
        "registry's repositories use is unknown",
    )


def discover_repositories(storage: Storage, errors: list[ReadProblem]) -> list[str]:
    """Every repository name under `repositories/`, nested ones included, sorted."""
    found: list[str] = []
    pending = [""]
    while pending:
        name = pending.pop()
        path = f"{layout.REPOSITORIES}/{name}" if name else layout.REPOSITORIES
        try:
            entries = storage.list_dir(path)
        except StorageMissingError:
            continue
        except StorageError as exc:
            errors.append(ReadProblem.of(path, exc))
            continue
        names = {e.name for e in entries if e.is_dir}
        if name and names & layout.REPOSITORY_MARKERS:
            found.append(name)
        linked = {e.name for e in entries if e.is_dir and e.is_link}
        for child in sorted(names - layout.REPOSITORY_MARKERS):
            # A repository path component starts with [a-z0-9]; `_`-names are registry data.
            if child.startswith("_"):
                continue
            if child in linked:
                # Distribution never links folders; following one can loop forever
                # (`loop -> .`) or leave the storage root. Said, never followed.
                outside = storage.outside_root(f"{path}/{child}")
                if outside is not None:
                    errors.append(ReadProblem(f"{path}/{child}", outside, f"{path}/{child}"))
                    continue
                errors.append(
                    ReadProblem(
                        f"{path}/{child}",
                        "a symbolic link to a folder: not followed (distribution never "
                        "creates links; a repository behind it is not checked)",
                    )
                )
                continue
            pending.append(f"{name}/{child}" if name else child)
    found.sort()
    return found


# --- one repository ----------------------------------------------------------------------


def read_repository(storage: Storage, name: str) -> RepositoryInventory:
    inv = RepositoryInventory(name)
    _read_digest_links(
        storage, inv, f"{layout.repository_dir(name)}/_manifests/revisions", inv.revisions
    )
    _read_digest_links(storage, inv, f"{layout.repository_dir(name)}/_layers", inv.layers)
    _read_tags(storage, inv)
    _read_uploads(storage, inv)
    return inv


def _list(storage: Storage, inv: RepositoryInventory, path: str) -> list[Entry]:
    """The entries of a layout folder. A symlink that is not a folder (dangling, a loop, or
    leaving the root) is recorded and left out: skipping it silently would make what it
    stands for look absent, and a repair would be planned into it."""
    try:
        entries = storage.list_dir(path)
    except StorageMissingError:
        return []
    except StorageError as exc:
        inv.errors.append(ReadProblem.of(path, exc))
        return []
    odd = [e for e in entries if e.is_link and not e.is_dir]
    for e in odd:
        if not _outside(storage, inv, f"{path}/{e.name}"):
            inv.errors.append(
                ReadProblem(
                    f"{path}/{e.name}",
                    "a symbolic link to no folder (dangling or a loop); distribution never "
                    "creates links",
                )
            )
    return [e for e in entries if not (e.is_link and not e.is_dir)] if odd else entries


def read_link(storage: Storage, path: str) -> Link | None:
    """The link at `path`, or None when absent. Raises StorageReadError when unreadable."""
    try:
        raw = storage.read(path, layout.LINK_READ_LIMIT)
    except StorageMissingError:
        return None
    return Link(path, layout.parse_link(raw), raw)


def _read_digest_links(
    storage: Storage, inv: RepositoryInventory, base: str, into: dict[str, Link]
) -> None:
    for alg_entry in _list(storage, inv, base):
        if not alg_entry.is_dir:
            continue
        algorithm = alg_entry.name
        folder = f"{base}/{algorithm}"
        names: list[str] = []
        for entry in _list(storage, inv, folder):
            hex_ = entry.name
            if not entry.is_dir:
                continue
            if not layout.is_digest_folder(algorithm, hex_):
                inv.stray.append(f"{folder}/{hex_}")
                continue
            if entry.is_link and _outside(storage, inv, f"{folder}/{hex_}"):
                continue  # read_many follows the names it is given: checked here
            names.append(hex_)
        raws = storage.read_many(folder, names, "link", layout.LINK_READ_LIMIT)
        for hex_, raw in zip(names, raws, strict=True):
            if isinstance(raw, StorageMissingError):
                # A folder without a link is not served: as if absent. Rare, so only here
                # is the folder listed, for what an interrupted link write left.
                inv.temp_files += temp_files_in(storage, f"{folder}/{hex_}")
                continue
            path = f"{folder}/{hex_}/link"
            if isinstance(raw, StorageError):
                inv.errors.append(ReadProblem.of(path, raw))
                continue
            into[f"{algorithm}:{hex_}"] = Link(path, layout.parse_link(raw), raw)


def temp_files_in(storage: Storage, folder: str) -> list[str]:
    """Paths of the temp files (`layout.is_temp_name`) directly in `folder`; an unreadable
    or absent folder has none (its reads report it)."""
    try:
        entries = storage.list_dir(folder)
    except StorageError:
        return []
    return [
        f"{folder}/{e.name}"
        for e in entries
        if not e.is_dir and not e.is_link and layout.is_temp_name(e.name)
    ]


def _outside(storage: Storage, inv: RepositoryInventory, path: str) -> bool:
    """Whether the symlink at `path` resolves outside the root (then recorded)."""
    why = storage.outside_root(path)
    if why is None:
        return False
    inv.errors.append(ReadProblem(path, why, path))
    return True


def _read_tags(storage: Storage, inv: RepositoryInventory) -> None:
    base = layout.tags_dir(inv.name)
    for entry in _list(storage, inv, base):
        tag = entry.name
        if not entry.is_dir:
            continue
        path = f"{base}/{tag}/current/link"
        try:
            inv.tags[tag] = read_link(storage, path)
        except StorageError as exc:
            inv.errors.append(ReadProblem.of(path, exc))
        else:
            if inv.tags[tag] is None:
                inv.temp_files += temp_files_in(storage, f"{base}/{tag}/current")
        history: dict[str, Link] = {}
        _read_digest_links(storage, inv, f"{base}/{tag}/index", history)
        for digest, link in history.items():
            if link.digest != digest:
                inv.bad_history.append((tag, digest, link))
        current = inv.tags.get(tag)
        if _REFERRERS_TAG.fullmatch(tag):
            inv.superseded_referrer_indexes.update(
                d
                for d, link in history.items()
                if link.digest == d and (current is None or current.digest != d)
            )


def _read_uploads(storage: Storage, inv: RepositoryInventory) -> None:
    base = layout.uploads_dir(inv.name)
    for entry in _list(storage, inv, base):
        upload_id = entry.name
        if not entry.is_dir:
            continue
        inv.uploads.append(read_upload(storage, inv.name, upload_id, inv.errors))


def read_upload(
    storage: Storage, repository: str, upload_id: str, errors: list[ReadProblem]
) -> Upload:
    path = layout.upload_dir(repository, upload_id)
    started: float | None = None
    try:
        started = parse_startedat(storage.read(f"{path}/startedat", 64))
    except StorageMissingError:
        pass
    except StorageError as exc:
        errors.append(ReadProblem.of(f"{path}/startedat", exc))
    data: FileInfo | None = None
    try:
        data = storage.stat(f"{path}/data")
    except StorageError as exc:
        errors.append(ReadProblem.of(f"{path}/data", exc))
    if started is None and data is not None:
        started = data.mtime
    return Upload(upload_id, path, started, data.size if data else 0)


def parse_startedat(raw: bytes) -> float | None:
    """`startedat` holds Go's time.RFC3339 text (registry/storage/linkedblobstore.go)."""
    try:
        return dt.datetime.fromisoformat(raw.decode().strip()).timestamp()
    except (UnicodeDecodeError, ValueError):
        return None


# --- the global blob store ---------------------------------------------------------------


class ManifestState(enum.StrEnum):
    OK = "ok"  # present, hashes to its digest, parsed: `node` is set
    MISSING = "missing"
    DIGEST_MISMATCH = "digest-mismatch"  # the bytes hash to another digest (`message`)
    INVALID = "invalid"  # the bytes hash right but are no manifest (`message`)
    UNREADABLE = "unreadable"  # the storage could not read it (`message`): a check-error


@dataclass(frozen=True, slots=True)
class ManifestRead:
    """A manifest's data as found: `node` when present, verified and parsed."""

    digest: str
    state: ManifestState
    node: ManifestNode | None = None
    message: str = ""
    size: int = 0
    link: str = ""  # UNREADABLE because of this symlink leaving the storage root


# Recent results kept for digests shared by several repositories (base layers, promoted
# images); bounded, so memory does not grow with the registry. An evicted entry is read again.
STAT_CACHE_SIZE = 16384
MANIFEST_CACHE_SIZE = 2048
HASH_CACHE_SIZE = 16384


class _Pending:
    """A hash one thread is computing while others wait for it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: HashState = Missing()


class BlobStore:
    """Reads from the global blob store, recent answers cached.

    Thread-safe enough for a pool: results are plain values, and a race only means one
    object is read twice.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._stats: BoundedCache[str, FileState] = BoundedCache(STAT_CACHE_SIZE)
        self._manifests: BoundedCache[str, ManifestRead] = BoundedCache(MANIFEST_CACHE_SIZE)
        self._hashes: BoundedCache[str, HashState] = BoundedCache(HASH_CACHE_SIZE)
        self._hashing: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def stat(self, digest: str) -> FileState:
        """The blob's data file: FileInfo, Missing or Unreadable."""
        got = self._stats.get(digest)
        if got is None:
            got = stat_state(self.storage, layout.blob_data(digest))
            self._stats.put(digest, got)
        return got

    def manifest(self, digest: str) -> ManifestRead:
        got = self._manifests.get(digest)
        if got is None:
            got = read_manifest(self.storage, digest)
            self._manifests.put(digest, got)
        return got

    def content_hash(self, digest: str, size_hint: int = -1) -> HashState:
        """The blob's data hashed in `digest`'s algorithm: Hashed, Missing or Unreadable.
        Threads asking for the same blob together share one hashing."""
        with self._lock:
            got = self._hashes.get(digest)
            if got is not None:
                return got
            pending = self._hashing.get(digest)
            mine = pending is None
            if pending is None:
                pending = self._hashing[digest] = _Pending()
        if not mine:
            pending.done.wait()
            return pending.result
        algorithm = digest.partition(":")[0]
        result: HashState
        try:
            result = Hashed(*self.storage.hash_file(layout.blob_data(digest), algorithm, size_hint))
        except StorageMissingError:
            result = Missing()
        except StorageError as exc:
            result = Unreadable(str(exc), getattr(exc, "link", ""))
        pending.result = result
        with self._lock:
            self._hashes.put(digest, result)
            del self._hashing[digest]
        pending.done.set()
        return result


def stat_state(storage: Storage, path: str) -> FileState:
    """`storage.stat(path)` as data: FileInfo, Missing or Unreadable; never raises."""
    try:
        info = storage.stat(path)
    except StorageError as exc:
        return Unreadable(str(exc), getattr(exc, "link", ""))
    return info if info is not None else Missing()


def read_manifest(storage: Storage, digest: str) -> ManifestRead:
    """Read, verify and parse one manifest from the blob store.

    References come only from bytes whose hash matches the digest: corrupted bytes could
    name blobs that were never part of the image.
    """
    path = layout.blob_data(digest)
    try:
        raw = storage.read(path, mt.MAX_MANIFEST_BYTES)
    except StorageMissingError:
        return ManifestRead(digest, ManifestState.MISSING)
    except StorageError as exc:
        return ManifestRead(
            digest, ManifestState.UNREADABLE, message=str(exc), link=getattr(exc, "link", "")
        )
    if len(raw) > mt.MAX_MANIFEST_BYTES:
        return ManifestRead(
            digest, ManifestState.INVALID, message="over the 4 MiB manifest limit", size=len(raw)
        )
    algorithm, _, hex_ = digest.partition(":")
    actual = hashlib.new(algorithm, raw).hexdigest()
    if actual != hex_:
        return ManifestRead(
            digest,
            ManifestState.DIGEST_MISMATCH,
            message=f"data hashes to {algorithm}:{actual}",
            size=len(raw),
        )
    try:
        node = node_from_bytes(raw, digest)
    except ManifestError as exc:
        return ManifestRead(digest, ManifestState.INVALID, message=str(exc), size=len(raw))
    return ManifestRead(digest, ManifestState.OK, node=node, size=len(raw))


def list_blobs(storage: Storage, errors: list[ReadProblem]) -> Iterator[str]:
    """Every digest with a folder in the global blob store (data file not checked)."""
    try:
        algorithms = storage.list_dir(layout.BLOBS)
    except StorageMissingError:
        return
    except StorageError as exc:
        errors.append(ReadProblem.of(layout.BLOBS, exc))
        return
    for alg in algorithms:
        if not alg.is_dir or alg.name not in layout.ALGORITHMS:
            continue
        base = f"{layout.BLOBS}/{alg.name}"
        try:
            prefixes = storage.list_dir(base)
        except StorageError as exc:
            errors.append(ReadProblem.of(base, exc))
            continue
        for prefix in sorted(e.name for e in prefixes if e.is_dir):
            try:
                entries = storage.list_dir(f"{base}/{prefix}")
            except StorageError as exc:
                errors.append(ReadProblem.of(f"{base}/{prefix}", exc))
                continue
            for e in entries:
                if e.is_dir and layout.is_digest_folder(alg.name, e.name):
                    yield f"{alg.name}:{e.name}"
