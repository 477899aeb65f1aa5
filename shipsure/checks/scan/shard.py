"""`--shard I/N`: which repositories one of N scans owns; the one parser of shard text."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from shipsure.errors import UsageError

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
