"""`--shard I/N`: which repositories one of N scans owns; the one parser of shard text, and
the one check that the shard reports a merge joins make up one whole run."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from shipsure.errors import BadInputError, UsageError

_SHARD = re.compile(r"([0-9]{1,9})/([0-9]{1,9})")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        # ASCII digits only: int() alone also takes " 1", "+1", "1_0" and other scripts'
        # digits ("１", "١"), which no Indexed Job writes and a typo should not become.
        got = _SHARD.fullmatch(text)
        shard = cls(int(got[1]), int(got[2])) if got else None
        if shard is None or shard.count < 1 or not 0 <= shard.index < shard.count:
            raise UsageError(f"invalid shard {text!r}: want I/N with 0 <= I < N, e.g. 0/4")
        return shard

    def owns(self, repository: str) -> bool:
        # crc32 is stable across runs, machines and Python versions (hash() is not).
        return zlib.crc32(repository.encode()) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class ShardSet:
    """The shard reports a merge joins (`report merge`, of scans or probes): shards of one
    count over one target, each index once, and every index there (`count_when_whole`).
    Errors are BadInputError naming the report file (exit 2)."""

    def __init__(self, verb: str) -> None:
        self._verb = verb  # how a report's target is told: "scanned" storage, "probed" registry
        self._count: int | None = None
        self._target: object = None
        self._names: dict[int, str] = {}

    def add(self, name: str, shard: Shard, target: object) -> None:
        """Take report `name`, shard `shard` of a run over `target`."""
        if self._count is None:
            self._count, self._target = shard.count, target
        elif shard.count != self._count:
            raise BadInputError(f"{name}: shard {shard} is not of {self._count} shards")
        elif target != self._target:
            raise BadInputError(f"{name}: {self._verb} {target}, not {self._target}")
        if shard.index in self._names:
            raise BadInputError(f"{name}: shard {shard} is also in {self._names[shard.index]}")
        self._names[shard.index] = name

    @property
    def target(self) -> object:
        return self._target

    def count_when_whole(self) -> int:
        """N, once every shard 0..N-1 is in; BadInputError naming those missing."""
        if self._count is None:
            raise BadInputError("report merge: no reports given")
        missing = sorted(set(range(self._count)) - set(self._names))
        if missing:
            listed = ", ".join(f"{i}/{self._count}" for i in missing)
            raise BadInputError(f"report merge: shard(s) {listed} missing; every shard is needed")
        return self._count
