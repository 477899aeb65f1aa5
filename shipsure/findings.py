"""Findings and reports: the one shape every check produces and every renderer reads.

Pure: no I/O. A finding says exactly what is broken (repository, digest, what refers to it,
the HTTP status or storage path). "Could not check" is its own kind (`check-error`) and never
counts as missing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ExitCode(enum.IntEnum):
    """Exit codes mean one thing each (see README, "Exit codes")."""

    CLEAN = 0
    FINDINGS = 1
    USAGE = 2
    COULD_NOT_RUN = 3


class Severity(enum.IntEnum):
    """Ordered, so `--fail-on` can compare."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None


# --- the table of finding kinds -----------------------------------------------------------
# Stable kebab-case ids: JSON consumers, alert rules and `--fail-on` filters key on them.
# Every kind a command emits is here, once, listed under that command; the code and the
# README's tables are checked against it (tests/test_findings.py).

VERIFY = "verify"
PROBE = "probe"
SERVE = "serve"
SCAN = "scan"
LINT = "lint"
GC_CHECK = "gc-check"
# probe and serve walk with verify's walk, so they emit its kinds; not those that only
# `--platform` or a `tag@digest` reference can give (neither command takes them).
_WALK = (VERIFY, PROBE, SERVE)


@dataclass(frozen=True)
class Kind:
    """One finding kind.

    `severity` is the default: what verify reports, and what scan reports when a tag
    reaches the fault (tag -> index -> child -> blob). `untagged` is scan's severity when no
    tag reaches it (content only pullable by digest, or not on any pull path); None means
    the same as `severity`.
    """

    id: str
    severity: Severity
    meaning: str
    commands: frozenset[str]
    untagged: Severity | None = None

    @property
    def untagged_severity(self) -> Severity:
        return self.untagged if self.untagged is not None else self.severity


def _kind(
    id: str,
    severity: Severity,
    meaning: str,
    *commands: str,
    untagged: Severity | None = None,
) -> Kind:
    return Kind(id, severity, meaning, frozenset(commands), untagged)


_E, _W, _I, _C = Severity.ERROR, Severity.WARNING, Severity.INFO, Severity.CRITICAL

KINDS: tuple[Kind, ...] = (
    # The kind of a finding that means "we could not ask", never "it is missing".
    _kind(
        "check-error",
        _E,
        "could not check: timeout, 5xx or 429 after retries, auth refused, unusable answer, "
        "unreadable storage; never counted as missing (exit 3)",
        *_WALK,
        SCAN,
        LINT,
        GC_CHECK,
    ),
    # verify, probe and serve: what a pull sees over HTTP.
    _kind(
        "tag-not-found",
        _E,
        "the tag does not resolve (missing, or it names a manifest whose data is gone)",
        *_WALK,
    ),
    _kind(
        "repository-not-found",
        _E,
        "the registry does not know the repository (`NAME_UNKNOWN`)",
        *_WALK,
    ),
    _kind("manifest-missing", _E, "a manifest the tree references answers 404", *_WALK),
    _kind(
        "digest-header-mismatch",
        _E,
        "`Docker-Content-Digest` disagrees with the bytes sent",
        *_WALK,
    ),
    _kind(
        "manifest-size-mismatch", _E, "manifest length differs from its descriptor's size", *_WALK
    ),
    _kind("manifest-unsupported", _W, "Docker schema1: recognised, not checked", *_WALK),
    _kind("platform-not-found", _E, "`--platform` matched no child of the index", VERIFY),
    _kind(
        "blob-truncated",
        _E,
        "`--deep`: the body ended early (stale cache, truncated answer)",
        *_WALK,
    ),
    _kind("tag-moved", _I, "a `tag@digest` reference whose tag now points elsewhere", VERIFY),
    # The walk's and scan's: the same fault seen over HTTP or on storage.
    _kind(
        "manifest-digest-mismatch",
        _E,
        "manifest bytes do not hash to their digest",
        *_WALK,
        SCAN,
        untagged=_W,
    ),
    _kind(
        "manifest-invalid",
        _E,
        "the bytes hash right but are not a manifest shipsure can read",
        *_WALK,
        SCAN,
        untagged=_W,
    ),
    _kind(
        "blob-missing",
        _E,
        "a config or layer a manifest names is gone (verify: 404, "
        "JSON `role` says which; scan: no data file)",
        *_WALK,
        SCAN,
        untagged=_W,
    ),
    _kind(
        "blob-size-mismatch",
        _E,
        "blob length differs from its descriptor's size",
        *_WALK,
        SCAN,
        untagged=_W,
    ),
    _kind(
        "blob-digest-mismatch",
        _E,
        "`--deep` / `--verify-content`: the bytes are corrupted",
        *_WALK,
        SCAN,
        untagged=_W,
    ),
    # scan: what is wrong on storage (registry-facts §4), tag-level first.
    _kind(
        "tag-revision-missing",
        _C,
        "the tag names a digest with no revision link: the tag "
        "answers 404 (**re-linkable** when the manifest data is present and verifies)",
        SCAN,
    ),
    _kind(
        "tag-manifest-missing",
        _C,
        "the tag's revision link is there, its manifest data is gone: the tag answers 404",
        SCAN,
    ),
    _kind(
        "tag-link-missing", _C, "a tag folder without `current/link`: listed, never served", SCAN
    ),
    _kind(
        "revision-data-missing",
        _E,
        "a revision link whose manifest data is gone",
        SCAN,
        untagged=_W,
    ),
    _kind(
        "index-child-relinkable",
        _E,
        "an index child without revision link whose data is "
        "present and verifies: `--apply` re-links it",
        SCAN,
        untagged=_W,
    ),
    _kind(
        "index-child-lost",
        _E,
        "an index child without revision link whose data is gone or corrupt",
        SCAN,
        untagged=_W,
    ),
    _kind(
        "layer-link-missing",
        _E,
        "blob data present, but this repository has no `_layers` "
        "link to serve it (`--apply` re-links it)",
        SCAN,
        untagged=_W,
    ),
    _kind(
        "malformed-link",
        _E,
        "a link file whose content is not exactly its digest (a "
        "trailing newline, spaces, garbage); the clean digest when there is one; critical "
        "when it is a tag's `current/link`",
        SCAN,
        untagged=_W,
    ),
    _kind(
        "layer-link-dangling",
        _W,
        "a `_layers` link whose data is gone that no manifest "
        "uses (HEAD may still answer 200 from a blob-descriptor cache)",
        SCAN,
    ),
    _kind(
        "blob-unreferenced",
        _I,
        "no manifest lists the blob: the next garbage collection "
        "deletes it (JSON `bytes` says how much it reclaims); never reported while a "
        "manifest's references are unknown (a `check-error` names it instead)",
        SCAN,
    ),
    _kind("upload-stale", _W, "an unfinished upload older than `--upload-max-age`", SCAN),
    _kind(
        "link-outside-root",
        _E,
        "a symlink in the layout that resolves outside the storage root (distribution makes "
        "none): nothing behind it is read, and `--apply` never acts on it",
        SCAN,
    ),
    _kind(
        "temp-file-stale",
        _W,
        "a temp file an interrupted write left in the layout, older than an hour "
        "(`--apply` removes it)",
        SCAN,
    ),
    # gc-check: what a registry's own garbage collection would do to tags that need things.
    _kind(
        "gc-breaks-tag",
        _E,
        "the tag pulls today and the collection deletes a manifest, blob or layer link its "
        "image needs (JSON `deletes` lists them)",
        GC_CHECK,
    ),
    _kind(
        "gc-deletes-referrer",
        _W,
        "the collection deletes a signature, SBOM or attestation of the tag",
        GC_CHECK,
    ),
    _kind(
        "gc-deepens-damage",
        _W,
        "the tag is already broken and the collection deletes what a repair needs",
        GC_CHECK,
    ),
    _kind(
        "gc-skips-lost-manifest",
        _W,
        "a manifest on the tag's tree has no data: the collection skips it when marking and "
        "deletes the blobs only it references",
        GC_CHECK,
    ),
    _kind(
        "gc-would-abort",
        _W,
        "the collection stops with this error and deletes nothing (or only what it "
        "reached before a failing sweep)",
        GC_CHECK,
    ),
)

_BY_ID = {k.id: k for k in KINDS}


def kind(id: str) -> Kind:
    """The table's entry for `id`. Raises KeyError for an id not in the table."""
    return _BY_ID[id]


def kinds_of(command: str) -> list[Kind]:
    """The kinds `command` emits, in table order."""
    return [k for k in KINDS if command in k.commands]


CHECK_ERROR = kind("check-error").id


@dataclass(frozen=True)
class Finding:
    """One problem, described well enough to act on without re-running anything.

    `kind` is a stable kebab-case id (e.g. `manifest-missing`, `blob-digest-mismatch`).
    `path` is the chain from what was checked to the bad object, e.g.
    `["tag latest", "index sha256:..", "linux/arm64 sha256:..", "layer sha256:.."]`.
    `details` holds extra machine-readable facts (HTTP status, registry error code, storage
    path, sizes); it is copied into JSON as-is.
    """

    kind: str
    severity: Severity
    message: str
    repository: str | None = None
    reference: str | None = None
    digest: str | None = None
    path: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    # What the command could do about it, as typed data its planner matches on (e.g. scan's
    # `checks.scan.remedy`); never rendered, and not part of the finding's identity.
    remedy: object | None = field(default=None, compare=False, repr=False)

    @property
    def is_check_error(self) -> bool:
        return self.kind == CHECK_ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity.label,
            "repository": self.repository,
            "reference": self.reference,
            "digest": self.digest,
            "message": self.message,
            "path": list(self.path),
            **{k: v for k, v in self.details.items() if k not in _RESERVED},
        }

    @classmethod
    def from_dict(cls, item: Any) -> Finding:
        """The finding a `to_dict` (a report's JSON) holds; unknown keys become `details`.
        Raises ValueError when `item` is not an object with a kind and a known severity."""
        if not isinstance(item, Mapping) or not isinstance(item.get("kind"), str):
            raise ValueError("a finding is not an object with a kind")
        path = item.get("path")
        return cls(
            kind=item["kind"],
            severity=Severity.parse(str(item.get("severity"))),
            message=str(item.get("message") or ""),
            repository=item.get("repository"),
            reference=item.get("reference"),
            digest=item.get("digest"),
            path=tuple(str(p) for p in path) if isinstance(path, list) else (),
            details={k: v for k, v in item.items() if k not in _RESERVED},
        )


_RESERVED = frozenset({"kind", "severity", "repository", "reference", "digest", "message", "path"})


@dataclass
class Report:
    """What one command found, plus counters of what it looked at."""

    command: str
    findings: list[Finding] = field(default_factory=list)
    # What was examined, e.g. {"references": 3, "manifests": 12, "blobs": 40}.
    checked: dict[str, int] = field(default_factory=dict)
    # Free-form facts about the run (target, duration, options) for renderers.
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    def count(self, key: str, n: int = 1) -> None:
        self.checked[key] = self.checked.get(key, 0) + n

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.is_check_error]

    @property
    def check_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_check_error]

    def exit_code(self, fail_on: Severity = Severity.WARNING) -> ExitCode:
        """1 when a real problem reaches `fail_on`; else 3 when something could not be
        checked; else 0. A real problem wins over "could not check": it is certain."""
        if any(f.severity >= fail_on for f in self.problems):
            return ExitCode.FINDINGS
        if self.check_errors:
            return ExitCode.COULD_NOT_RUN
        return ExitCode.CLEAN

    def sorted_findings(self) -> list[Finding]:
        return sorted(
            self.findings,
            key=lambda f: (-f.severity, f.repository or "", f.reference or "", f.digest or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "checked": dict(self.checked),
            **self.meta,
            "findings": [f.to_dict() for f in self.sorted_findings()],
        }


def markdown_table(command: str) -> str:
    """The README's table of `command`'s kinds (tests/test_findings.py keeps them equal)."""
    rows = ["| kind | severity | meaning |", "|---|---|---|"]
    for k in kinds_of(command):
        severity = k.severity.label
        if command == SCAN and k.untagged_severity != k.severity:
            severity += f" ({k.untagged_severity.label} when no tag reaches it)"
        rows.append(f"| `{k.id}` | {severity} | {k.meaning} |")
    return "\n".join(rows) + "\n"
