"""The status page: one server-rendered HTML document. Pure: `render(PageData) -> str`.

Works without JavaScript and loads nothing from elsewhere (closed networks): the style is
inline, the search box is a GET form filtered on the server. Everything shown is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape as html_escape
from typing import Any

from shipsure.report.terminal import printable
from shipsure.serve.store import BROKEN, HEALTHY, UNCHECKED, ProbeRecord, PushRecord, StoredFinding
from shipsure.serve.store import TagState as StoredTag


@dataclass(frozen=True)
class PageData:
    registry: str
    now: float
    search: str
    findings: Sequence[StoredFinding]  # open, filtered and limited
    findings_total: int  # open
    findings_matched: int  # open and matching the search
    tags: Sequence[StoredTag]  # filtered and limited
    tags_matched: int
    tag_counts: dict[str, int]
    pushes: Sequence[PushRecord]
    probes: Sequence[ProbeRecord]
    probe_running: bool
    probe_interval: float
    queue_pending: int
    dropped: int
    ready: bool
    ready_reason: str


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;
background:#f6f8fa}
header{background:#24292f;color:#fff;padding:12px 24px}
header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#d0d7de}
main{padding:16px 24px;max-width:1400px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:0 0 16px;
padding:12px 16px}
h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{font-weight:600;background:#f6f8fa}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.state{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.broken{background:#ffebe9;color:#a40e26}
.could-not-check{background:#fff8c5;color:#7d4e00}
.healthy{background:#dafbe1;color:#116329}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:140px;background:#fff}
.tile b{display:block;font-size:20px}
form{margin:0 0 16px}
input[type=search]{width:360px;padding:6px;font-size:14px}
button{padding:6px 12px;font-size:14px}
.path{margin:0;padding-left:16px}
.muted{color:#57606a}
"""


def escape(text: object) -> str:
    """`text` for the page: HTML-escaped, and with control, bidi and undecodable characters
    spelled `\\xNN` as in text output (names come from registries and storage; a lone
    surrogate could not even be encoded, and the page answered 500)."""
    return html_escape(printable(text))


def render(data: PageData) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="refresh" content="30">',
        f"<title>shipsure: {escape(data.registry)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<header>",
        f"<h1>shipsure serve: {escape(data.registry)}</h1>",
        f"<p>as of {_time(data.now)} · {'ready' if data.ready else 'not ready'}: "
        f"{escape(data.ready_reason)}</p>",
        "</header><main>",
        _search(data),
        _tiles(data),
        _findings(data),
        _tags(data),
        _pushes(data),
        _probes(data),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _search(data: PageData) -> str:
    return (
        '<form method="get" action="/" role="search">'
        '<label for="q">Search repositories, tags, digests, kinds: </label>'
        f'<input type="search" id="q" name="q" value="{escape(data.search)}" '
        'placeholder="team/app or v1.2 or blob-missing"> '
        '<button type="submit">Search</button>'
        + (' <a href="/">clear</a>' if data.search else "")
        + "</form>"
    )


def _tiles(data: PageData) -> str:
    last = data.probes[0] if data.probes else None
    if data.probe_running:
        probe = "running"
    elif last is None:
        probe = "none yet"
    else:
        probe = f"{_ago(data.now, last.finished)} ({'complete' if last.complete else 'partial'})"
    tiles = [
        ("open findings", str(data.findings_total)),
        ("broken tags", str(data.tag_counts.get(BROKEN, 0))),
        ("could not check", str(data.tag_counts.get(UNCHECKED, 0))),
        ("healthy tags", str(data.tag_counts.get(HEALTHY, 0))),
        ("last probe", probe),
        ("pushes waiting", str(data.queue_pending)),
    ]
    if data.dropped:
        tiles.append(("pushes left to the probe (queue full)", str(data.dropped)))
    return (
        '<section class="tiles">'
        + "".join(f'<div class="tile"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in tiles)
        + "</section>"
    )


def _findings(data: PageData) -> str:
    title = f"Findings ({len(data.findings)}"
    if data.search or data.findings_matched > len(data.findings):
        title += f" of {data.findings_matched if data.search else data.findings_total}"
    title += ")"
    if not data.findings:
        return f"<section><h2>{title}</h2><p class='muted'>None.</p></section>"
    more = (
        f"<p class='muted'>Showing the first {len(data.findings)}; search to narrow, or read "
        "them all at <a href='/api/findings'>/api/findings</a>.</p>"
        if data.findings_matched > len(data.findings)
        else ""
    )
    rows = []
    for f in data.findings:
        doc = f.finding
        path = doc.get("path") or []
        path_html = "".join(f"<li><code>{escape(str(p))}</code></li>" for p in path)
        tags = ", ".join(f.tags) or "-"
        status = " ".join(str(doc[k]) for k in ("status", "error_code") if doc.get(k))
        rows.append(
            "<tr>"
            f"<td>{_state(BROKEN)} <b>{escape(f.kind)}</b><br>"
            f"<span class='muted'>{escape(f.severity)}</span></td>"
            f"<td>{escape(f.repository)}<br>tags: <b>{escape(tags)}</b></td>"
            f"<td>{escape(str(doc.get('message', '')))}"
            f"{'<br><span class=muted>' + escape(status) + '</span>' if status else ''}"
            f"<ol class='path'>{path_html}</ol></td>"
            f"<td>{_time(f.first_seen)}<br><span class='muted'>{_ago(data.now, f.first_seen)}"
            f"</span></td>"
            f"<td>{escape(f.source)}<br><span class='muted'>{_ago(data.now, f.last_seen)}"
            "</span></td></tr>"
        )
    return (
        f"<section id='findings'><h2>{title}</h2><table><thead><tr><th>kind</th>"
        "<th>repository</th><th>what and where (path)</th><th>since</th><th>last seen by</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</section>"
    )


def _tags(data: PageData) -> str:
    title = f"Repositories and tags ({len(data.tags)}"
    title += f" of {data.tags_matched} matching)" if data.tags_matched > len(data.tags) else ")"
    if not data.tags:
        return f"<section><h2>{title}</h2><p class='muted'>None known yet.</p></section>"
    rows = "".join(
        "<tr>"
        f"<td>{escape(t.repository)}</td><td><b>{escape(t.tag)}</b></td>"
        f"<td>{_state(t.state)}</td>"
        f"<td>{_time(t.since)}<br><span class='muted'>{_ago(data.now, t.since)}</span></td>"
        f"<td><code>{escape(_short(t.digest))}</code></td>"
        f"<td>{escape(t.source)} <span class='muted'>{_ago(data.now, t.checked)}</span></td>"
        "</tr>"
        for t in data.tags
    )
    more = (
        f"<p class='muted'>Showing the first {len(data.tags)}, broken first; search to narrow.</p>"
        if data.tags_matched > len(data.tags)
        else ""
    )
    return (
        f"<section id='tags'><h2>{title}</h2><table><thead><tr><th>repository</th><th>tag</th>"
        "<th>state</th><th>since</th><th>digest</th><th>last checked by</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}</section>"
    )


def _pushes(data: PageData) -> str:
    if not data.pushes:
        return "<section><h2>Push verifications</h2><p class='muted'>None yet.</p></section>"
    rows = "".join(
        "<tr>"
        f"<td>{_time(p.verified)}</td><td>{escape(p.repository)}</td>"
        f"<td><b>{escape(', '.join(p.tags) or '(by digest)')}</b></td>"
        f"<td><code>{escape(_short(p.digest))}</code> <span class='muted'>{escape(p.kind)}"
        "</span></td>"
        f"<td>{_state(p.outcome)}"
        f"{f' {p.problems} finding(s)' if p.problems else ''}"
        f"{f' {p.check_errors} not checked' if p.check_errors else ''}</td>"
        f"<td>{p.verified - p.received:.2f} s</td></tr>"
        for p in data.pushes
    )
    return (
        "<section id='pushes'><h2>Push verifications (most recent first)</h2><table><thead>"
        "<tr><th>verified</th><th>repository</th><th>tags</th><th>digest</th><th>outcome</th>"
        f"<th>after the event</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _probes(data: PageData) -> str:
    every = f"every {_duration(data.probe_interval)}" if data.probe_interval > 0 else "off"
    if not data.probes:
        return (
            f"<section><h2>Probes ({every})</h2><p class='muted'>"
            f"{'Running now.' if data.probe_running else 'None yet.'}</p></section>"
        )
    rows = "".join(_probe_row(p) for p in data.probes)
    return (
        f"<section id='probes'><h2>Probes ({every})</h2><table><thead><tr><th>finished</th>"
        "<th>run</th><th>tags checked</th><th>findings</th><th>could not check</th>"
        f"<th>took</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _probe_row(p: ProbeRecord) -> str:
    s: dict[str, Any] = p.summary
    run = "complete" if p.complete else "partial"
    return (
        f"<tr><td>{_time(p.finished)}</td>"
        f"<td>{_state(HEALTHY if p.complete else UNCHECKED, run)}"
        f"</td><td>{s.get('tags_checked', 0)} / {s.get('tags', 0)} in "
        f"{s.get('repositories', 0)} repositories</td><td>{s.get('findings', 0)}</td>"
        f"<td>{s.get('check_errors', 0)}</td><td>{float(s.get('duration_seconds', 0)):.1f} s"
        "</td></tr>"
    )


def _state(state: str, label: str | None = None) -> str:
    css = state.replace(" ", "-")
    return f'<span class="state {escape(css)}">{escape(label or state)}</span>'


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(now: float, ts: float) -> str:
    return f"{_duration(max(0.0, now - ts))} ago"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _short(digest: str | None) -> str:
    if not digest:
        return "-"
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else digest


def matches(search: str, *texts: object) -> bool:
    """Case-insensitive substring match over the given fields (the page's search)."""
    needle = search.strip().lower()
    return not needle or any(needle in str(t).lower() for t in texts if t is not None)
