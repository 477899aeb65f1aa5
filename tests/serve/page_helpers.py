"""The status page rendered around one stored finding, for tests of what the page shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipsure.serve import page
from shipsure.serve.store import StoredFinding


def page_of(
    finding: Mapping[str, Any],
    *,
    tags: tuple[str, ...] = (),
    source: str = "push",
    search: str = "",
    total: int = 1,
) -> str:
    """The HTML of a page showing `finding` as the first of `total` that match `search`."""
    stored = StoredFinding(
        identity="x",
        finding=dict(finding),
        tags=tags,
        source=source,
        first_seen=1.0,
        last_seen=2.0,
        resolved=None,
    )
    data = page.PageData(
        registry="reg:5000",
        now=10.0,
        search=search,
        findings=[stored],
        findings_total=total,
        findings_matched=total,
        tags=[],
        tags_matched=0,
        tag_counts={},
        pushes=[],
        probes=[],
        probe_running=False,
        probe_interval=0.0,
        queue_pending=0,
        dropped=0,
        ready=True,
        ready_reason="ok",
    )
    return page.render(data)
