"""Text for people about a probe run: findings (new or since when), states, coverage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipsure.findings import Report
from shipsure.report import text_format
from shipsure.report.terminal import printable

# Said of a `--repo` name probed without the catalog whose tags list answered 404.
UNKNOWN_REPOSITORY = "the registry does not know this repository (its tags list answered 404)"


def render(report: Report) -> str:
    meta: Mapping[str, Any] = report.meta.get("probe", {})
    lines = []
    for f in report.sorted_findings():
        change = f.details.get("change")
        if change:
            since = f.details.get("since", "")
            note = "NEW" if change == "new" else f"since {since}"
            where = f.repository or meta.get("registry", "")
            noted = printable(f.details.get("state", ""))
            lines.append(f"[{note}] {printable(f.kind)} {printable(where)} {noted}".rstrip())
    body = text_format.render(report)
    out = [body.rstrip("\n")]
    if lines:
        out += ["", "changes since the previous run:", *("  " + line for line in lines)]
    state = meta.get("state") or {}
    for entry in state.get("recovered", []):
        what = printable(entry.get("digest") or "tag " + ",".join(entry.get("tags") or []))
        out.append(
            f"  [RECOVERED] {printable(entry['kind'])} {printable(entry.get('repository'))} {what} "
            f"(seen {entry['first_seen']} .. {entry['last_seen']})"
        )
    for entry in state.get("not_checked_again", []):
        out.append(
            f"  [NOT CHECKED] {printable(entry['kind'])} {printable(entry.get('repository'))}: "
            "could not be checked "
            f"this run (last seen {entry['last_seen']})"
        )
    if meta:
        status = "complete" if meta.get("complete") else "PARTIAL"
        out.append(
            f"probe {meta.get('registry')} shard {meta.get('shard')}: {status}; "
            f"{meta.get('repositories', 0)} repositories "
            f"({meta.get('repositories_unchecked', 0)} unlisted), "
            f"{meta.get('tags_checked', 0)}/{meta.get('tags', 0)} tags checked; "
            f"catalog {'ok' if meta.get('catalog_accessible') else 'INACCESSIBLE'}, "
            f"auth {'ok' if meta.get('auth_accepted', True) else 'FAILING'}"
        )
        for glob in meta.get("repository_globs_unmatched", []):
            out.append(
                f"  warning: --repo {printable(repr(glob))} matched no repository in the catalog"
            )
        for name in meta.get("repositories_unknown", []):
            out.append(f"  warning: --repo {printable(repr(name))}: {UNKNOWN_REPOSITORY}")
        for entry in meta.get("unchecked", []):
            reasons = printable("; ".join(entry.get("reasons", [])))
            out.append(
                f"  not checked: {printable(entry['repository'])}: {entry.get('tags', 0)} tag(s) "
                f"({reasons})"
            )
    return "\n".join(out) + "\n"
