"""Prometheus text exposition (format 0.0.4) of a finished report.

Pure: it reads a report snapshot, so a scrape never triggers registry or storage I/O.
"""

from __future__ import annotations

from collections import Counter

from shipsure.findings import Report


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def render(report: Report) -> str:
    cmd = report.command
    out = [
        "# HELP shipsure_findings Findings of the last run, by kind and severity.",
        "# TYPE shipsure_findings gauge",
    ]
    counts = Counter((f.kind, f.severity.label) for f in report.findings)
    for (kind, severity), n in sorted(counts.items()):
        out.append(f"shipsure_findings{_labels(command=cmd, kind=kind, severity=severity)} {n}")
    out += [
        "# HELP shipsure_checked_objects Objects examined by the last run, by kind of object.",
        "# TYPE shipsure_checked_objects gauge",
    ]
    for what, n in sorted(report.checked.items()):
        out.append(f"shipsure_checked_objects{_labels(command=cmd, object=what)} {n}")
    out += [
        "# HELP shipsure_problems Findings that are real problems (not check errors).",
        "# TYPE shipsure_problems gauge",
        f"shipsure_problems{_labels(command=cmd)} {len(report.problems)}",
        "# HELP shipsure_check_errors Objects that could not be checked.",
        "# TYPE shipsure_check_errors gauge",
        f"shipsure_check_errors{_labels(command=cmd)} {len(report.check_errors)}",
    ]
    return "\n".join(out) + "\n"
