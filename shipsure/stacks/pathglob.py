"""Path patterns anchored at the repository root, the way `.gitignore` users expect.

`*` and `?` stay inside one folder; `**` spans folders (`modules/**` matches `modules`,
`modules/net` and `modules/net/sub/main.tf`; `**/modules/**` matches a `modules` folder at any
depth). A pattern without `/` used as a *marker* matches the file name only. In `globals`,
`watch` and `exclude`, `covers` also takes a pattern naming a folder to mean everything below
it. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    text = pattern.strip().lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("/**", i) and i + 3 == len(text):
            out.append("(?:/.*)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, pattern: str) -> bool:
    return compile_pattern(pattern).match(path) is not None


def first_match(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that matches `path`, or None."""
    for pattern in patterns:
        if matches(path, pattern):
            return pattern
    return None


def covers(path: str, patterns: Iterable[str]) -> bool:
    """A file pattern matches `path` or a folder holding it: as in `.gitignore`, naming a
    folder (`ci`, `config/app`) takes in every file below it."""
    patterns = tuple(patterns)
    while path:
        if first_match(path, patterns) is not None:
            return True
        path = path.rpartition("/")[0]
    return False
