"""Lint output for people (text) and machines (json); SARIF lives in `sarif.py`. Pure.

JSON items carry `rule`, `path` (the file), `line`, `column` (when known), `severity` and
`message` at top level, plus `kind`, `repository`, `reference` and rule-specific facts. The
shared `Finding.to_dict` reserves `path` for an object path, so lint maps its file there.
"""

from __future__ import annotations

from typing import Any

from shipsure.findings import Finding, Report
from shipsure.lint.rules import location
from shipsure.report import json_format
from shipsure.report.terminal import printable


def finding_dict(f: Finding) -> dict[str, Any]:
    data = f.to_dict()
    file, line, column = location(f)
    data.pop("file", None)
    out: dict[str, Any] = {
        "rule": f.details.get("rule", f.kind),
        "path": file,
        "line": line,
    }
    if column:
        out["column"] = column
    out.update({k: v for k, v in data.items() if k not in ("rule", "path", "line", "column")})
    return out


def render_json(report: Report) -> str:
    data = {
        "command": report.command,
        "checked": dict(report.checked),
        **report.meta,
        "findings": [finding_dict(f) for f in report.findings],
    }
    return json_format.dumps(data)


def render_text(report: Report) -> str:
    lines: list[str] = []
    for f in report.findings:
        file, line, column = location(f)
        where = f"{printable(file)}:{line}:{column}" if column else f"{printable(file)}:{line}"
        rule = printable(f.details.get("rule", f.kind))
        lines.append(f"{where}: {f.severity.label} {rule} {printable(f.message)}")
    checked = ", ".join(f"{n} {what}" for what, n in report.checked.items())
    summary = (
        f"lint: {len(report.problems)} problem(s), {len(report.check_errors)} could not be checked"
    )
    if checked:
        summary += f"; checked {checked}"
    lines.append(summary)
    return "\n".join(lines) + "\n"
