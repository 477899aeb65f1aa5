"""Hash a local blob store in a separate process while the scan walks the repositories.

`scan --verify-content` must hash every blob; in the scanning process that work queues
behind the walk on one interpreter. A child process (`python -m shipsure.storage.blob_hasher
ROOT`) hashes the whole global blob store on another core at the same time and streams back
only the blobs that did not hash to their digest or could not be read, one line each, so
neither side holds anything that grows with the store. The scan re-hashes those few itself
before it reports them: the child only says where to look.

The digest algorithms to hash come on the command line (`sha256=64,sha512=128`: name and
hex length), from `model.DIGEST_ALGORITHMS` in the parent, the one list of them.

Output lines (tab-separated): `mismatch DIGEST ACTUAL_HEX` and `error DIGEST MESSAGE`.
A blob folder without data is skipped (the walk reports missing data). Exit status 0 means
every blob folder was listed; anything else means the answer is incomplete and the caller
falls back to hashing in-process.

Standard library only, and no other shipsure module, so the child starts in milliseconds.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

BLOBS = "docker/registry/v2/blobs"
_HEX = frozenset("0123456789abcdef")
_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
MISMATCH = "mismatch"
ERROR = "error"


def _prefix_folders(root: str, algorithms: dict[str, int]) -> Iterator[tuple[str, int, str]]:
    """(algorithm, hex length, path) of every prefix folder (`blobs/sha256/ab`); OSError if
    a folder is unreadable or a folder above the digest folders is a symlink (the scan then
    hashes in-process, where links are checked against the storage root)."""
    base = os.path.join(root, BLOBS)
    real_root = os.path.realpath(root)
    if not os.path.realpath(base).startswith(real_root.rstrip("/") + "/"):
        raise OSError(errno.ELOOP, f"{base} resolves outside the storage root")
    try:
        present = sorted(_folders(base))
    except FileNotFoundError:
        return
    for algorithm in present:
        length = algorithms.get(algorithm)
        if length is not None:
            for prefix in sorted(_folders(os.path.join(base, algorithm))):
                yield algorithm, length, os.path.join(base, algorithm, prefix)


def _folders(path: str) -> list[str]:
    """The folders in `path`; OSError for a symlink among them (distribution makes none)."""
    found = []
    with os.scandir(path) as entries:
        for e in entries:
            if e.is_symlink():
                raise OSError(errno.ELOOP, f"{e.path} is a symbolic link")
            if e.is_dir(follow_symlinks=False):
                found.append(e.name)
    return found


def _hash(
    folder_fd: int, name: str, new: Callable[[], hashlib._Hash], buffer: memoryview
) -> str | None:
    """The hex digest of `name/data` in the open folder, or None when it is not there.
    Opened relative to the prefix folder: the kernel resolves two names, not a dozen.
    OSError when it is not a regular file: a FIFO would block the open (hence O_NONBLOCK)
    and a device never end; a symlink is not followed (O_NOFOLLOW): the scan checks where
    it leads."""
    try:
        fd = os.open(f"{name}/data", _OPEN_FLAGS, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        h = new()
        # Ask for one byte more than the file holds: a short read of a regular file is its
        # end, so a small blob costs one read, not a second one that returns nothing. A
        # file that grew since the fstat fills the read and is read on to its end.
        want = min(st.st_size + 1, _CHUNK)
        while n := os.readv(fd, [buffer[:want]]):
            h.update(buffer[:n])
            if n < want:
                break
            want = _CHUNK
        return h.hexdigest()
    finally:
        os.close(fd)


def hash_store(root: str, algorithms: dict[str, int], out: TextIO) -> None:
    buffer = memoryview(bytearray(_CHUNK))
    for algorithm, length, folder in _prefix_folders(root, algorithms):
        # The named constructor (hashlib.sha256) skips hashlib.new's lookup on every blob.
        new = getattr(hashlib, algorithm, None) or functools.partial(hashlib.new, algorithm)
        prefix = os.path.basename(folder)
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            with os.scandir(folder_fd) as entries:
                # (name, is a symlink) of each digest folder; other names are the walk's.
                digests = [
                    (e.name, e.is_symlink())
                    for e in entries
                    if len(e.name) == length
                    and e.name.startswith(prefix)
                    and _HEX.issuperset(e.name)
                ]
            for hex_, linked in digests:
                if linked:
                    out.write(f"{ERROR}\t{algorithm}:{hex_}\ta symbolic link: hashed by the scan\n")
                    continue
                try:
                    got = _hash(folder_fd, hex_, new, buffer)
                except OSError as exc:
                    where = os.path.join(folder, hex_, "data")
                    out.write(f"{ERROR}\t{algorithm}:{hex_}\t{where}: {exc.strerror or exc}\n")
                    continue
                if got is not None and got != hex_:
                    out.write(f"{MISMATCH}\t{algorithm}:{hex_}\t{got}\n")
        finally:
            os.close(folder_fd)


def main(argv: list[str]) -> int:
    try:
        root, listed = argv
        algorithms = {a: int(n) for a, _, n in (p.partition("=") for p in listed.split(","))}
    except ValueError:
        print(
            "usage: python -m shipsure.storage.blob_hasher STORAGE_ROOT sha256=64[,...]",
            file=sys.stderr,
        )
        return 2
    try:
        hash_store(root, algorithms, sys.stdout)
    except OSError as exc:
        print(f"{exc}", file=sys.stderr)
        return 3
    sys.stdout.flush()
    return 0


class BackgroundHasher:
    """The child process. Its (few) lines go to an unnamed temporary file rather than a
    pipe: nothing has to read while it runs (no thread in this process, which may fork the
    scan's workers meanwhile), and a child with many lines to say never blocks on a full pipe.
    """

    def __init__(self, root: str, algorithms: Mapping[str, int]) -> None:
        # The child imports this very module, wherever this process found it.
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
        listed = ",".join(f"{a}={n}" for a, n in algorithms.items())
        # Closed by result() or stop(): it outlives this constructor.
        self._out = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "shipsure.storage.blob_hasher", root, listed],
                env={**os.environ, "PYTHONPATH": python_path},
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=subprocess.DEVNULL,
            )
        except BaseException:
            self._out.close()
            raise

    def result(self) -> set[str] | None:
        """The suspects once the child is done, or None when its answer is incomplete."""
        code = self._proc.wait()
        self._out.seek(0)
        suspects = set()
        for line in self._out:
            kind, _, rest = line.partition("\t")
            digest = rest.partition("\t")[0].strip()
            if kind in (MISMATCH, ERROR) and digest:
                suspects.add(digest)
        self._out.close()
        return suspects if code == 0 else None

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._out.close()


def start(root: str, algorithms: Mapping[str, int]) -> BackgroundHasher | None:
    """A running hasher of the blobs of `algorithms` (name -> hex length), or None when no
    process can be started (the caller hashes itself)."""
    try:
        return BackgroundHasher(root, algorithms)
    except (OSError, RuntimeError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
