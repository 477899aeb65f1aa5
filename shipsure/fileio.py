"""Durable local writes, done the way the registry does them: temp file beside the target,
fsync, then rename, so a reader (or a crash) only ever sees the old or the new content.
(Journals are `shipsure.plan.Journal`.)

Raises OSError; callers turn it into the error of their own family.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data`; `mode` sets the new file's permission bits (the temp
    file's 0600 otherwise). Creates missing parent folders; never leaves the temp file
    (unless killed); the rename is synced to disk before returning.

    A symbolic link is followed: the file it names is replaced and the link kept, as
    `echo > link` would. Anything that is not a regular file (a device such as /dev/full,
    a FIFO, a socket, a folder) is refused with `OSError` (EINVAL), never replaced: running
    as root, a rename over /dev/full would swap the device for a file.
    """
    target = os.path.realpath(os.fspath(path))
    try:
        info = os.stat(target)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    folder = os.path.dirname(target) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def fsync_dir(folder: str | Path) -> None:
    """Make a folder's entries (a rename, a new file) durable; best effort, as some
    filesystems cannot sync a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the regular file at `path` (links followed), so the
    caller can tell "over the limit" from "exactly the limit".

    The file is opened non-blocking and checked before reading: a FIFO would wait for a
    writer forever and a device (/dev/zero) never ends. Raises OSError (EINVAL, "not a
    regular file") for those, and the open's own OSError otherwise.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        return handle.read(limit + 1)
