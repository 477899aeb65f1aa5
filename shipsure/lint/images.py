"""Is an image reference pinned? The PIN rules, applied to one reference. Pure.

What counts as floating (PIN003), exactly:
- a version tag with fewer than three numeric parts: `2`, `2.8`, `v3`, `18-alpine`,
  `3.12-slim`. Docker Official Images and most vendors re-point these to each new release of
  the line. A major part of four or more digits (`20240101`, `2024.01`) is a date or build
  number, not a release line, and is left alone.
- a channel tag: `stable`, `edge`, `lts`, `mainline`, `current`, `nightly`, `rolling`, and
  the bare variants of latest `alpine` and `slim` (also with a suffix: `lts-alpine`).
Not floating: `2.8.3`, `2.8.3-alpine`, anything with `@sha256:...` (the digest is what is
pulled, whatever the tag says), and tags that are not versions (`3f2a1c9`, `build-412`).

`latest`, `latest-*` and `*-latest` are PIN002; no tag at all is PIN001.

References holding `$VAR`, `${VAR}` or `{{ template }}` cannot be judged statically; they are
reported once as PIN005 (info) so they are not silently skipped. Dockerfile `ARG` defaults are
substituted before we get here.

PIN004 (known-bad versions) applies to the tag even when a digest is also given: pinning a
buggy version does not fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipsure.errors import InvalidReferenceError
from shipsure.findings import Finding
from shipsure.lint.rules import finding
from shipsure.model import Reference


@dataclass(frozen=True)
class ImageUse:
    """One image reference found in a file.

    `line`/`column` say where the reference is reported. `literal` is true when `text` is
    written exactly there, so `--fix` may rewrite it; a reference assembled from an
    `ARG` default is reported at its `FROM` but lives at `fix_line` (or nowhere, when built from
    several pieces).
    """

    file: str
    line: int
    column: int
    text: str
    source: str  # e.g. "compose service web", "Dockerfile FROM", "Woodpecker step deploy"
    fix_line: int | None = None  # where `text` is written literally; None: not fixable
    note: str = ""  # e.g. "from ARG BASE (line 1)"


@dataclass(frozen=True)
class KnownBad:
    repositories: frozenset[str]  # repository paths, matched on any registry host
    major: int
    message: str


KNOWN_BAD = (
    KnownBad(
        frozenset({"library/registry", "distribution/distribution"}),
        2,
        "distribution 2.x: `registry garbage-collect --delete-untagged` deletes the child "
        "manifests, configs and layers of multi-arch images while their tag still resolves; "
        "fixed in v3 (use registry:3.x)",
    ),
)

_VERSION_RE = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[-_+].*)?\Z")
_CHANNELS = frozenset({"stable", "edge", "lts", "mainline", "current", "nightly", "rolling"})
_LATEST_VARIANTS = frozenset({"alpine", "slim"})
_UNRESOLVED_MARKERS = ("$", "{{")


def tag_floats(tag: str) -> bool:
    m = _VERSION_RE.match(tag)
    if m:
        parts = m.group(1).split(".")
        return len(parts) < 3 and len(parts[0]) <= 3
    first = tag.split("-", 1)[0]
    return first in _CHANNELS or tag in _LATEST_VARIANTS


def is_latest(tag: str) -> bool:
    return tag == "latest" or tag.startswith("latest-") or tag.endswith("-latest")


def major_version(tag: str) -> int | None:
    m = _VERSION_RE.match(tag)
    return int(m.group(1).split(".")[0]) if m else None


def known_bad(ref: Reference) -> KnownBad | None:
    if ref.tag is None:
        return None
    major = major_version(ref.tag)
    for entry in KNOWN_BAD:
        if ref.repository in entry.repositories and major == entry.major:
            return entry
    return None


def check_image(use: ImageUse) -> list[Finding]:
    """The PIN findings for one reference (empty when it is pinned and not known-bad)."""
    out: list[Finding] = []
    suffix = f" ({use.note})" if use.note else ""

    def hit(rule: str, message: str, ref: Reference | None = None) -> None:
        out.append(
            finding(
                rule,
                use.file,
                use.line,
                f"{use.source}: {message}{suffix}",
                column=use.column,
                repository=ref.name if ref else None,
                reference=str(ref) if ref else None,
                extra={"image": use.text, "source": use.source},
            )
        )

    if any(marker in use.text for marker in _UNRESOLVED_MARKERS):
        hit("PIN005", f"image {use.text!r} uses a variable or template; cannot tell if pinned")
        return out
    try:
        ref = Reference.parse(use.text, default_tag=False)
    except InvalidReferenceError as exc:
        hit("PIN005", str(exc))
        return out
    bad = known_bad(ref)
    if bad is not None:
        hit("PIN004", f"image {use.text!r} is a known-bad version: {bad.message}", ref)
    if ref.digest is not None:
        return out
    if ref.tag is None:
        hit("PIN001", f"image {use.text!r} has no tag, so it means `latest`; pin tag@digest", ref)
    elif is_latest(ref.tag):
        hit("PIN002", f"image {use.text!r} uses the moving tag {ref.tag!r}; pin tag@digest", ref)
    elif tag_floats(ref.tag):
        hit(
            "PIN003",
            f"image {use.text!r} uses the floating tag {ref.tag!r}, which moves to each new "
            "release of its line; pin a full version and its digest",
            ref,
        )
    return out
