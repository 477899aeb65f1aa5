"""SARIF 2.1.0 output, as GitHub code scanning ingests it. Pure.

Every rule is listed in `runs[0].tool.driver.rules` (so `ruleIndex` is stable across runs);
each finding is a `result` with `physicalLocation.artifactLocation.uri` and
`region.startLine`/`startColumn`. The URI is relative to the repository root
(`%SRCROOT%`: the nearest folder above the file holding `.git`), whatever folder lint ran
from, since code scanning maps results onto the repository's files; a file in no
repository gets its absolute `file://` URI. Files that could not be checked are
`toolExecutionNotifications` of the invocation, not results: they are not rule violations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shipsure import __version__
from shipsure.findings import Finding, Report, Severity
from shipsure.lint.rules import RULES, location
from shipsure.report import json_format

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVEL = {
    Severity.INFO: "note",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "error",
}


def _rules() -> list[dict[str, Any]]:
    return [
        {
            "id": rule.id,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": f"{rule.summary}: {rule.why}."},
            "help": {"text": f"Flags {rule.summary}; {rule.why}."},
            "defaultConfiguration": {"level": _LEVEL[rule.severity]},
            "properties": {"tags": ["ci" if rule.id.startswith("WP") else "supply-chain"]},
        }
        for rule in RULES.values()
    ]


def _artifact(file: str) -> dict[str, str]:
    # Not resolved: a symbolic link is reported where it is, as the repository holds it.
    path = Path(os.path.abspath(file))
    for folder in path.parents:
        if (folder / ".git").exists():
            rel = path.relative_to(folder).as_posix()
            return {"uri": quote(rel), "uriBaseId": "%SRCROOT%"}
    return {"uri": path.as_uri()}


def _physical(f: Finding) -> dict[str, Any]:
    file, line, column = location(f)
    region: dict[str, Any] = {"startLine": max(line, 1)}
    if column:
        region["startColumn"] = column
    return {"physicalLocation": {"artifactLocation": _artifact(file), "region": region}}


def render(report: Report) -> str:
    index = {rule_id: i for i, rule_id in enumerate(RULES)}
    results = []
    for f in report.problems:
        rule_id = str(f.details.get("rule", f.kind))
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "level": _LEVEL[f.severity],
            "message": {"text": f.message},
            "locations": [_physical(f)],
        }
        if rule_id in index:
            result["ruleIndex"] = index[rule_id]
        results.append(result)
    notifications = [
        {"level": "error", "message": {"text": f.message}, "locations": [_physical(f)]}
        for f in report.check_errors
    ]
    run = {
        "tool": {
            "driver": {
                "name": "shipsure",
                "version": __version__,
                "rules": _rules(),
            }
        },
        "invocations": [
            {
                "executionSuccessful": not notifications,
                "toolExecutionNotifications": notifications,
            }
        ],
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json_format.dumps(log)
