"""Compact collections of digests for scans of registries with millions of blobs.

A `sha256:<hex>` string costs about 120 bytes in Python, plus the slot of the set or dict
holding it; a scan that remembers every referenced digest that way grows with the tree.
`DigestLog` keeps each sha256 digest as its 32 raw bytes appended to one of 256 byte
arrays (by first byte), which is all a whole-registry question ("is this blob referenced
anywhere?", "how many distinct manifests?") needs: the questions are asked once at the end,
one first byte at a time, so only 1/256 of the log is ever expanded into a set.

`BoundedCache` remembers the most recent results of storage reads; evicted entries are
simply read again, which gives the same answer (and races are settled by the re-check).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

_HEX = "0123456789abcdef"
_SHA256_PREFIX = "sha256:"


def sha256_bytes(digest: str) -> bytes | None:
    """The 32 raw bytes of a lowercase `sha256:<hex>` digest, or None for anything else."""
    if len(digest) != 71 or not digest.startswith(_SHA256_PREFIX):
        return None
    hex_ = digest[7:]
    # bytes.fromhex accepts upper case too; distribution's digests are lower case only, and
    # an upper-case one names another (non-existent) path, so it must not fold into this one.
    if hex_.strip(_HEX):
        return None
    return bytes.fromhex(hex_)


class DigestLog:
    """Append-only multiset of digests; distinct values are computed when asked.

    Not thread-safe: one thread appends (the scan's collecting loop).
    """

    def __init__(self) -> None:
        self._buckets = [bytearray() for _ in range(256)]
        self._other: set[str] = set()  # sha384/sha512 and anything unusual: rare

    def add(self, digest: str) -> None:
        raw = sha256_bytes(digest)
        if raw is None:
            self._other.add(digest)
        else:
            self._buckets[raw[0]] += raw

    def update(self, digests: Iterable[str]) -> None:
        # `add` inlined: a scan appends every digest of every repository through here.
        buckets, other, fromhex = self._buckets, self._other, bytes.fromhex
        for digest in digests:
            if len(digest) == 71 and digest.startswith(_SHA256_PREFIX):
                hex_ = digest[7:]
                if not hex_.strip(_HEX):
                    raw = fromhex(hex_)
                    buckets[raw[0]] += raw
                    continue
            other.add(digest)

    def merge(self, other: DigestLog) -> None:
        for first, data in enumerate(other._buckets):
            self._buckets[first] += data
        self._other |= other._other

    def bucket(self, first_byte: int) -> set[bytes]:
        """Distinct sha256 digests (raw bytes) whose first byte is `first_byte`."""
        data = self._buckets[first_byte]
        return {bytes(data[i : i + 32]) for i in range(0, len(data), 32)}

    def __contains__(self, digest: object) -> bool:
        """Slow (scans one bucket); for tests and the odd single question."""
        if not isinstance(digest, str):
            return False
        raw = sha256_bytes(digest)
        if raw is None:
            return digest in self._other
        return raw in self.bucket(raw[0])

    def distinct(self) -> Iterator[str]:
        """Every distinct digest as text, sha256 ones in byte order."""
        for first in range(256):
            for raw in sorted(self.bucket(first)):
                yield _SHA256_PREFIX + raw.hex()
        yield from sorted(self._other)

    def difference(self, other: DigestLog) -> Iterator[str]:
        """Distinct digests of this log that `other` lacks, sha256 ones in byte order;
        one bucket of each log is expanded at a time."""
        for first in range(256):
            for raw in sorted(self.bucket(first) - other.bucket(first)):
                yield _SHA256_PREFIX + raw.hex()
        yield from sorted(self._other - other._other)

    def count_distinct(self) -> int:
        return sum(len(self.bucket(first)) for first in range(256)) + len(self._other)

    def other(self) -> set[str]:
        return self._other


K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `size` entries; the oldest insertion goes first. Thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
