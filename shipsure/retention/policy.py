"""Retention policies: which tags of a repository to keep. Pure: tags in, decisions out.

A policy is a rule tree:
- `newest: N`                keep the N most recently created tags
- `match: REGEX`             keep tags the regular expression matches in full
- `younger_than: AGE`        keep tags created less than AGE ago (`90m`, `12h`, `30d`, `2w`)
- `semver: {per: major|minor, newest: N}`  keep the N newest semantic versions of each major
                             (or major.minor) line; tags that are not versions are not kept
- `any: [RULE...]` / `all: [RULE...]`      keep when any / every rule keeps
A tag listed in `protect` is always kept. A tag whose creation time is unknown is kept by
every time-based rule (never delete what cannot be dated).

Creation times are seconds since the epoch (the image config's `created`; for an index,
its newest child's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TagInfo:
    tag: str
    created: float | None  # seconds since the epoch; None when unknown


class Rule(Protocol):
    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        """The names of `tags` this rule keeps."""
        ...


def _by_age(tags: Sequence[TagInfo]) -> list[TagInfo]:
    # Newest first; equal times by name, descending, so the order is total and stable.
    return sorted(
        tags, key=lambda t: (t.created if t.created is not None else 0.0, t.tag), reverse=True
    )


@dataclass(frozen=True)
class Newest:
    count: int

    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        undated = {t.tag for t in tags if t.created is None}
        dated = [t for t in tags if t.created is not None]
        return undated | {t.tag for t in _by_age(dated)[: self.count]}


@dataclass(frozen=True)
class Match:
    pattern: re.Pattern[str]

    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        return {t.tag for t in tags if self.pattern.fullmatch(t.tag)}


@dataclass(frozen=True)
class YoungerThan:
    seconds: float

    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        return {t.tag for t in tags if t.created is None or now - t.created < self.seconds}


_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)


def semver_key(tag: str) -> tuple[int, int, int, tuple[tuple[int, int | str], ...]] | None:
    """A sort key following semver.org §11 precedence, or None for a non-version tag."""
    m = _SEMVER.fullmatch(tag)
    if m is None:
        return None
    pre: tuple[tuple[int, int | str], ...]
    if m.group(4) is None:
        pre = ((2, 0),)  # a release ranks above all its pre-releases
    else:
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in m.group(4).split("."))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


@dataclass(frozen=True)
class Semver:
    per: str  # "major" or "minor"
    count: int = 1

    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        lines: dict[tuple[int, ...], list[tuple[object, str]]] = {}
        for t in tags:
            key = semver_key(t.tag)
            if key is None:
                continue
            line = (key[0],) if self.per == "major" else (key[0], key[1])
            lines.setdefault(line, []).append((key, t.tag))
        out: set[str] = set()
        for members in lines.values():
            members.sort(key=lambda item: item[0], reverse=True)  # type: ignore[arg-type,return-value]
            out.update(tag for _, tag in members[: self.count])
        return out


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]

    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        out: set[str] = set()
        for rule in self.rules:
            out |= rule.keep(tags, now)
        return out


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]

    def keep(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        out = {t.tag for t in tags}
        for rule in self.rules:
            out &= rule.keep(tags, now)
        return out


@dataclass(frozen=True)
class Policy:
    """Applies to repositories whose name `repositories` matches (fnmatch-style globs)."""

    repositories: tuple[str, ...]
    keep: Rule
    protect: frozenset[str] = field(default_factory=frozenset)

    def decide(self, tags: Sequence[TagInfo], now: float) -> set[str]:
        """The tags to keep."""
        return self.keep.keep(tags, now) | {t.tag for t in tags if t.tag in self.protect}


_REFERRER_TAG = re.compile(r"sha256-([a-f0-9]{64})(?:\.[A-Za-z0-9_.-]+)?")


def referrer_subject(tag: str) -> str | None:
    """The subject digest of an OCI referrers fallback tag (`sha256-<hex>`, also cosign's
    `sha256-<hex>.sig/.att/.sbom`), else None."""
    m = _REFERRER_TAG.fullmatch(tag)
    return f"sha256:{m.group(1)}" if m else None
