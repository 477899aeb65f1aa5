"""Every lint rule in one table, and the one way to turn a hit into a `Finding`.

Rule ids are stable: configs disable them by id, SARIF consumers track them by id.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipsure.findings import CHECK_ERROR, Finding, Severity


@dataclass(frozen=True)
class Rule:
    id: str
    name: str  # PascalCase, as SARIF `reportingDescriptor.name` likes it
    severity: Severity
    summary: str  # one line: what it flags
    why: str  # one line: what goes wrong if ignored


_RULES = (
    Rule(
        "PIN001",
        "ImageWithoutTag",
        Severity.WARNING,
        "image reference without a tag or digest",
        "a missing tag means `latest`, which moves whenever anyone pushes",
    ),
    Rule(
        "PIN002",
        "ImageTagLatest",
        Severity.WARNING,
        "image reference pinned to `latest`",
        "`latest` moves whenever anyone pushes",
    ),
    Rule(
        "PIN003",
        "ImageTagFloating",
        Severity.WARNING,
        "image tag that floats: major-only (`2`), major.minor (`2.8`) or a channel (`stable`)",
        "the tag is re-pointed to every new release in its line, so the image changes under you",
    ),
    Rule(
        "PIN004",
        "ImageKnownBadVersion",
        Severity.ERROR,
        "image version with a known data-loss bug",
        "see the message for the bug and the fixed version",
    ),
    Rule(
        "PIN005",
        "ImageUnresolvable",
        Severity.INFO,
        "image reference that cannot be resolved statically (variable or template)",
        "its pinning cannot be checked; pin it where the variable is set",
    ),
    Rule(
        "WP001",
        "WoodpeckerSchema",
        Severity.ERROR,
        "file that fails Woodpecker's own JSON schema",
        "Woodpecker refuses the file",
    ),
    Rule(
        "WP002",
        "WoodpeckerSecretEvent",
        Severity.ERROR,
        "step reachable on an event its secret is not allowed for",
        "the pipeline errors on that event",
    ),
    Rule(
        "WP003",
        "WoodpeckerManualTrap",
        Severity.WARNING,
        "`when` item accepting `manual` without `evaluate`, while several workflows accept manual",
        "every manual trigger runs every workflow that accepts `manual`",
    ),
    Rule(
        "WP004",
        "WoodpeckerOrTrap",
        Severity.WARNING,
        "`evaluate`/`branch`/`path` in a `when` item without `event`, next to items with one",
        "`when` items are OR-ed: that item matches every event",
    ),
    Rule(
        "WP005",
        "WoodpeckerPathIgnored",
        Severity.WARNING,
        "`path` in a `when` item whose events include more than push and pull requests",
        "`path` is ignored for manual, cron, tag and other events",
    ),
    Rule(
        "WP006",
        "WoodpeckerCronFilter",
        Severity.WARNING,
        "`cron` filter without `event: cron`, or a cron-reachable step with no cron name filter",
        "the step runs on every cron job, or the filter never applies",
    ),
    Rule(
        "WP007",
        "WoodpeckerNoEventFilter",
        Severity.WARNING,
        "workflow with no event filter, neither on the workflow nor on its steps",
        "it runs on every event, manual and cron included",
    ),
    Rule(
        "WP008",
        "WoodpeckerSecretInEvaluate",
        Severity.ERROR,
        "`evaluate` naming a secret",
        "secrets are not available to `evaluate`: the condition never sees the value",
    ),
    Rule(
        "WP009",
        "WoodpeckerUnguardedApply",
        Severity.ERROR,
        "apply/destroy step reachable on manual, cron or pull_request without an `evaluate` guard",
        "an unreviewed apply",
    ),
    Rule(
        "WP010",
        "WoodpeckerDependsOnFiltered",
        Severity.WARNING,
        "`depends_on` a workflow that is filtered out for an event this one runs on",
        "when the dependency is dropped, its dependents are dropped too (unless `optional: true`)",
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}


def finding(
    rule_id: str,
    path: str,
    line: int,
    message: str,
    *,
    column: int | None = None,
    repository: str | None = None,
    reference: str | None = None,
    severity: Severity | None = None,
    extra: dict[str, Any] | None = None,
) -> Finding:
    """A finding of `rule_id` at `path:line[:column]`. `path` is the file, relative to the
    linted root as the user wrote it; it goes in `details` so JSON carries it at top level."""
    rule = RULES[rule_id]
    details: dict[str, Any] = {"rule": rule_id, "file": path, "line": line}
    if column is not None:
        details["column"] = column
    if extra:
        details.update(extra)
    return Finding(
        kind=rule_id,
        severity=severity if severity is not None else rule.severity,
        message=message,
        repository=repository,
        reference=reference,
        details=details,
    )


def location(f: Finding) -> tuple[str, int, int]:
    """(file, line, column) of a lint finding; column 0 when unknown."""
    return (
        str(f.details.get("file", "")),
        int(f.details.get("line", 0)),
        int(f.details.get("column", 0)),
    )


def check_error(path: str, line: int, message: str) -> Finding:
    """ "Could not check" this file (unreadable, unparsable, too large): never a rule hit."""
    return Finding(
        kind=CHECK_ERROR,
        severity=Severity.ERROR,
        message=message,
        details={"rule": CHECK_ERROR, "file": path, "line": line},
    )
