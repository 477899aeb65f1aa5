"""Text for people: one block per finding, most severe first, then a summary line."""

from __future__ import annotations

from shipsure.findings import Report
from shipsure.report.terminal import printable


def render(report: Report) -> str:
    lines: list[str] = []
    for f in report.sorted_findings():
        where = f.repository or ""
        if f.digest:
            where = f"{where}@{f.digest}" if where else f.digest
        head = f"{f.severity.label.upper():8} {printable(f.kind):24} {printable(where)}".rstrip()
        lines.append(head)
        lines.append(f"         {printable(f.message)}")
        if f.path:
            lines.append("         path: " + " -> ".join(printable(p) for p in f.path))
    checked = ", ".join(f"{n} {what}" for what, n in report.checked.items())
    problems, errors = len(report.problems), len(report.check_errors)
    summary = f"{report.command}: {problems} problem(s), {errors} could not be checked"
    if checked:
        summary += f"; checked {checked}"
    lines.append(summary)
    return "\n".join(lines) + "\n"
