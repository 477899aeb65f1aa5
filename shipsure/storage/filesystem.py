"""Distribution's filesystem driver layout on a local disk.

The hot paths (listing, reading link files) use os.scandir and raw file descriptors on
plain strings: a storage scan touches every link file, and Path objects or buffered file
objects per file cost more than the system calls themselves.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import threading

from shipsure import fileio
from shipsure.errors import BadInputError
from shipsure.storage.confine import escape, inside
from shipsure.storage.interface import (
    Entry,
    FileInfo,
    StorageError,
    StorageLinkOutsideError,
    StorageMissingError,
    StorageOutsideRootError,
    StorageReadError,
    StorageWriteError,
)

_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})
_HASH_CHUNK = 1 << 20
_FIRST_READ = 64 * 1024
_local = threading.local()


def _thread_buffer() -> memoryview:
    buffer: memoryview | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = memoryview(bytearray(_HASH_CHUNK))
    return buffer


# O_NONBLOCK: opening a FIFO for reading waits for a writer, forever; with it, the open
# returns at once and the file type check below refuses it.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK
# O_NOFOLLOW: a file that is itself a symlink fails with ELOOP instead of being read; only
# then is the link resolved and checked (links are rare: distribution never makes any).
_NOFOLLOW_FLAGS = _OPEN_FLAGS | os.O_NOFOLLOW
# Folders known to be inside the root (no symlink on their way leaves it); bounded, since a
# store has a folder per blob. Cleared when full: a miss only costs one lstat again.
_CHECKED_FOLDERS_MAX = 65536
# "Could not list": a marker no listing equals (no file name holds a NUL).
_UNLISTED: frozenset[str] = frozenset({"\0"})
_LSTATS_BEFORE_LISTING = 4

_FILE_TYPES = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}


def _not_regular(mode: int, path: str) -> StorageReadError | None:
    """An error when `mode` is not a regular file's: distribution writes only regular files,
    and reading anything else can block (a FIFO) or never end (a device)."""
    if stat.S_ISREG(mode):
        return None
    what = _FILE_TYPES.get(stat.S_IFMT(mode), "not a regular file")
    return StorageReadError(f"{path}: {what}, not a regular file; not read", path=path)


def _open_regular(abs_path: str, path: str, dir_fd: int | None = None) -> int:
    """A read-only descriptor of a regular file; StorageError for anything else. The last
    component is opened without following a symlink: callers check a link first."""
    try:
        fd = os.open(abs_path, _NOFOLLOW_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _error(exc, path) from None
    try:
        refused = _not_regular(os.fstat(fd).st_mode, path)
    except OSError as exc:
        os.close(fd)
        raise _error(exc, path) from None
    if refused is not None:
        os.close(fd)
        raise refused
    return fd


def _error(exc: OSError, path: str) -> StorageError:
    if exc.errno in _MISSING_ERRNOS:
        return StorageMissingError(f"{path}: not found", path=path)
    reason = exc.strerror or type(exc).__name__
    return StorageReadError(f"{path}: {reason}", path=path)


class FilesystemStorage:
    can_fork_workers = True  # reads are local: the walk is bound by the interpreter

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.local_root: str | None = self.root
        self._prefix = self.root.rstrip("/") + "/"
        self._real_root = os.path.realpath(self.root)
        self._inside: set[str] = {""}
        self._links_in: dict[str, frozenset[str]] = {}
        self._asked: dict[str, int] = {}

    def __getstate__(self) -> dict[str, object]:
        # Worker processes get the storage pickled: the cache is rebuilt there.
        state = dict(self.__dict__)
        state["_inside"] = {""}
        state["_links_in"] = {}
        state["_asked"] = {}
        return state

    # --- nothing outside the root is read ----------------------------------------------

    def _link_target(self, path: str) -> str | None:
        """Where the symlink at `path` resolves when that is outside the root, else None."""
        resolved = os.path.realpath(self._abs(path))
        return None if inside(self._real_root, resolved) else resolved

    def _outside(self, path: str, target: str) -> StorageLinkOutsideError:
        return StorageLinkOutsideError(
            f"{path} is a symlink to {target}, outside the storage root",
            path=path,
            link=path,
        )

    def _check_folder(self, folder: str) -> None:
        """Raise StorageLinkOutsideError when `folder` or a folder above it is a symlink that
        resolves outside the root. One lstat per folder not seen before, or for a parent asked
        about often, one listing of it (256 listings cover every blob's folder)."""
        if folder in self._inside:
            return
        parent, _, name = folder.rpartition("/")
        if parent not in self._inside:
            self._check_folder(parent)
        links = self._links_in.get(parent)
        if links is None:
            # A folder asked about often (a blob prefix folder: one child per blob) is
            # listed once; a few children (a tag's `current` and `index`) are lstat'ed.
            asked = self._asked[parent] = self._asked.get(parent, 0) + 1
            links = _UNLISTED
            if asked > _LSTATS_BEFORE_LISTING:
                links = self._links_in[parent] = self._list_links(parent)
        if name in links or (links is _UNLISTED and self._is_link(folder)):
            target = self._link_target(folder)
            if target is not None:
                raise self._outside(folder, target)
        if len(self._inside) >= _CHECKED_FOLDERS_MAX:
            self._inside.clear()
            self._inside.add("")
            self._links_in.clear()
            self._asked.clear()
        self._inside.add(folder)

    def _list_links(self, folder: str) -> frozenset[str]:
        """The names of the symlinks in `folder` (d_type from the listing: no stat per name);
        _UNLISTED when it cannot be listed, so each name is lstat'ed instead."""
        try:
            with os.scandir(self._abs(folder)) as it:
                return frozenset(e.name for e in it if e.is_symlink())
        except OSError:
            return _UNLISTED

    def _is_link(self, path: str) -> bool:
        try:
            return stat.S_ISLNK(os.lstat(self._abs(path)).st_mode)
        except OSError:
            return False  # absent or unreadable: the read itself says so

    def _check_path(self, path: str) -> None:
        """`_check_folder` for the folders above `path`; the last component is the caller's
        (opened without following, or lstat'ed)."""
        folder = path.rpartition("/")[0]
        if folder in self._inside:
            return
        # The hot case, a blob's folder in an already listed prefix folder: no call, and
        # not remembered (one entry per blob would only churn the cache).
        parent, _, name = folder.rpartition("/")
        links = self._links_in.get(parent)
        if (
            links is not None
            and name not in links
            and links is not _UNLISTED
            and parent in self._inside
        ):
            return
        self._check_folder(folder)

    def _open_checked(self, path: str) -> int:
        self._check_path(path)
        try:
            return _open_regular(self._abs(path), path)
        except StorageReadError as refused:
            # _open_regular refuses a symlink as ELOOP ("too many levels..."): look again.
            try:
                st = os.lstat(self._abs(path))
            except OSError:
                raise refused from None
            if not stat.S_ISLNK(st.st_mode):
                raise
        target = self._link_target(path)
        if target is not None:
            raise self._outside(path, target)
        try:
            fd = os.open(self._abs(path), _OPEN_FLAGS)
        except OSError as exc:
            raise _error(exc, path) from None
        odd = _not_regular(os.fstat(fd).st_mode, path)
        if odd is not None:
            os.close(fd)
            raise odd
        return fd

    def describe(self) -> str:
        return self.root

    def _abs(self, path: str) -> str:
        return self._prefix + path if path else self.root

    def check_root(self) -> None:
        try:
            st = os.stat(self.root)
        except OSError as exc:
            reason = "not found" if exc.errno in _MISSING_ERRNOS else exc.strerror
            raise StorageReadError(f"storage root {self.root}: {reason}") from None
        if not stat.S_ISDIR(st.st_mode):
            # A file given for a folder is the user's input, not storage failing (exit 2).
            raise BadInputError(f"storage root {self.root}: not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageReadError(f"storage root {self.root}: permission denied")

    def list_dir(self, path: str) -> list[Entry]:
        self._check_folder(path)
        try:
            with os.scandir(self._abs(path)) as it:
                # is_dir() and is_symlink() answer from the directory entry's type: no
                # extra stat per name.
                entries = [Entry(e.name, e.is_dir(), e.is_symlink()) for e in it]
        except OSError as exc:
            raise _error(exc, path) from None
        # The listing already says which names are links: later checks of folders below
        # this one need no lstat (the walk lists before it reads).
        self._links_in[path] = frozenset(e.name for e in entries if e.is_link)
        return entries

    def read(self, path: str, limit: int) -> bytes:
        fd = self._open_checked(path)
        try:
            # A modest first read: asking os.read for a 4 MiB manifest limit would allocate
            # (and map) 4 MiB per file. A short read of a regular file means end of file, so
            # a link file or a manifest takes one read; anything cut short by a rare partial
            # read shows as a fault whose re-check reads the file again.
            want = min(limit + 1, _FIRST_READ)
            first = os.read(fd, want)
            if len(first) < want or len(first) > limit:
                return first
            chunks = [first]
            remaining = limit + 1 - len(first)
            while remaining > 0:
                chunk = os.read(fd, min(remaining, _HASH_CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise _error(exc, path) from None
        finally:
            os.close(fd)

    def read_many(
        self, folder: str, names: list[str], suffix: str, limit: int
    ) -> list[bytes | StorageError]:
        """`read(folder/name/suffix, limit)` for each name, errors as values. Opens relative to
        the folder, so the kernel resolves two path components per file instead of a dozen."""
        try:
            self._check_folder(folder)
        except StorageError as exc:
            return [exc for _ in names]
        try:
            dfd = os.open(self._abs(folder), os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            error = _error(exc, folder)
            return [error for _ in names]
        out: list[bytes | StorageError] = []
        want = min(limit + 1, _FIRST_READ)
        try:
            for name in names:
                rel = f"{name}/{suffix}"
                try:
                    fd = os.open(rel, _NOFOLLOW_FLAGS, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        out.append(_error(exc, f"{folder}/{rel}"))
                        continue
                    try:  # the file is a symlink: rare, read it the checked way
                        out.append(self.read(f"{folder}/{rel}", limit))
                    except StorageError as error:
                        out.append(error)
                    continue
                try:
                    first = os.read(fd, want)
                    # Only an empty answer can hide a FIFO (no writer: end of file at once):
                    # check the type then, not on every link (reads are bounded anyway).
                    where = f"{folder}/{rel}"
                    refused = _not_regular(os.fstat(fd).st_mode, where) if not first else None
                except OSError as exc:
                    out.append(_error(exc, f"{folder}/{rel}"))
                    continue
                finally:
                    os.close(fd)
                if refused is not None:
                    out.append(refused)
                    continue
                if len(first) == want and want <= limit:  # longer than one read: rare
                    try:
                        first = self.read(f"{folder}/{rel}", limit)
                    except StorageError as exc:
                        out.append(exc)
                        continue
                out.append(first)
        finally:
            os.close(dfd)
        return out

    def stat(self, path: str) -> FileInfo | None:
        self._check_path(path)
        try:
            st = os.lstat(self._abs(path))
            if stat.S_ISLNK(st.st_mode):
                target = self._link_target(path)
                if target is not None:
                    raise self._outside(path, target)
                st = os.stat(self._abs(path))
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return None
            raise _error(exc, path) from None
        refused = _not_regular(st.st_mode, path)
        if refused is not None:
            raise refused
        return FileInfo(st.st_size, st.st_mtime)

    def changed_at(self, path: str) -> float | None:
        self._check_path(path)
        while True:
            try:
                return os.stat(self._abs(path)).st_mtime
            except OSError as exc:
                if exc.errno not in _MISSING_ERRNOS:
                    raise _error(exc, path) from None
            if not path:
                return None
            path = path.rpartition("/")[0]

    def hash_file(self, path: str, algorithm: str, size_hint: int = -1) -> tuple[str, int]:
        fd = self._open_checked(path)
        try:
            h = hashlib.new(algorithm)
            buffer = _thread_buffer()
            size = 0
            # Read into this thread's reused buffer (no allocation per read), and ask for one
            # byte more than expected: a short read at the expected size is the end of file,
            # so a blob costs one read. hashlib releases the GIL while it hashes more than a
            # few KiB, so pool threads hash in parallel.
            want = _HASH_CHUNK if size_hint < 0 else min(size_hint + 1, _HASH_CHUNK)
            while True:
                n = os.readv(fd, [buffer[:want]])
                if not n:
                    break
                h.update(buffer[:n])
                size += n
                if n < want and size >= size_hint >= 0:
                    break
                want = _HASH_CHUNK
            return h.hexdigest(), size
        except OSError as exc:
            raise _error(exc, path) from None
        finally:
            os.close(fd)

    def outside_root(self, path: str) -> str | None:
        found = escape(self.root, path)
        return found.describe() if found else None

    def _confine(self, path: str) -> None:
        # Checked just before every write and delete, whatever planned it.
        found = escape(self.root, path)
        if found is not None:
            raise StorageOutsideRootError(
                f"{path}: refused: {found.describe()}", path=path, link=found.link
            )

    def write_atomic(self, path: str, data: bytes) -> None:
        self._confine(path)
        try:
            fileio.write_atomic(self._abs(path), data, mode=0o644)
        except OSError as exc:
            raise StorageWriteError(f"{path}: {exc.strerror or exc}", path=path) from None

    def remove_tree(self, path: str) -> None:
        self._confine(path)
        target = self._abs(path)
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageWriteError(f"{path}: {exc.strerror or exc}", path=path) from None
