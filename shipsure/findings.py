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


# The kind of a finding that means "we could not ask", never "it is missing".
CHECK_ERROR = "check-error"


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
