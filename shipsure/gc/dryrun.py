"""Read a saved `registry garbage-collect --dry-run` output and find the tell-tale.

The output (registry/storage/garbagecollect.go `emit`, same format in 2.8 and 3.x):

    <repo>                                          a repository starts
    <repo>: marking manifest <digest>               a revision is marked
    <repo>: marking blob <digest>                   something it references is marked
    manifest eligible for deletion: <digest>        2.8 -m: an untagged revision
    manifest eligible for deletion: {<repo> <digest> [<tags>]}     3.x -m
    blob eligible for deletion: <digest>
    <repo>: layer link eligible for deletion: <digest>             3.x only

The tell-tale (registry-facts §1): a digest printed both as "manifest eligible for deletion"
and as "marking blob" is a child of a tagged index that 2.8 is about to delete; the marking
line says which manifest (the index) referenced it. 3.x drops marked manifests from its
deletion list before printing it, so its output never shows the tell-tale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DIGEST = r"[a-z0-9]+:[a-f0-9]+"
_MARK_MANIFEST = re.compile(rf"^(?P<repo>\S+): marking manifest (?P<d>{_DIGEST})\s*\Z")
_MARK_BLOB = re.compile(rf"^(?P<repo>\S+): marking blob (?P<d>{_DIGEST})\s*\Z")
_ELIGIBLE_V2 = re.compile(rf"^manifest eligible for deletion: (?P<d>{_DIGEST})\s*\Z")
_ELIGIBLE_V3 = re.compile(
    rf"^manifest eligible for deletion: \{{(?P<repo>\S+) (?P<d>{_DIGEST}) \[.*\]\}}\s*\Z"
)
_BLOB = re.compile(rf"^blob eligible for deletion: (?P<d>{_DIGEST})\s*\Z")
_LAYER = re.compile(rf"^(?P<repo>\S+): layer link eligible for deletion: (?P<d>{_DIGEST})\s*\Z")
_SUMMARY = re.compile(r"^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible")
_REPO = re.compile(r"^[a-z0-9][a-zA-Z0-9._/:-]*\Z")


@dataclass(frozen=True, slots=True)
class TellTale:
    repository: str
    digest: str  # the child manifest that will be deleted
    parent: str | None  # the marked manifest whose reference marked it


@dataclass
class DryRun:
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    blobs: set[str] = field(default_factory=set)
    layer_links: list[tuple[str, str]] = field(default_factory=list)
    tell_tales: list[TellTale] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    summary: tuple[int, int, int] | None = None
    lines: int = 0


def parse(text: str) -> DryRun:
    out = DryRun()
    repository = ""
    parent: str | None = None
    # (repository, digest) -> the marked manifest that referenced it
    marked_by: dict[tuple[str, str], str | None] = {}
    for line in text.splitlines():
        out.lines += 1
        line = line.rstrip("\r")
        if m := _MARK_MANIFEST.match(line):
            repository, parent = m["repo"], m["d"]
        elif m := _MARK_BLOB.match(line):
            marked_by.setdefault((m["repo"], m["d"]), parent)
        elif m := _ELIGIBLE_V3.match(line):
            out.manifests.append((m["repo"], m["d"]))
        elif m := _ELIGIBLE_V2.match(line):
            out.manifests.append((repository, m["d"]))
        elif m := _BLOB.match(line):
            out.blobs.add(m["d"])
        elif m := _LAYER.match(line):
            out.layer_links.append((m["repo"], m["d"]))
        elif m := _SUMMARY.match(line):
            out.summary = (int(m[1]), int(m[2]), int(m[3]))
        elif "failed to" in line or "error enumerating" in line or line.startswith("panic:"):
            out.errors.append(line.strip())
        elif _REPO.match(line) and ": " not in line:
            repository, parent = line, None
    for repo, digest in out.manifests:
        if (repo, digest) in marked_by:
            out.tell_tales.append(TellTale(repo, digest, marked_by[(repo, digest)]))
    return out
