"""JSON: one object with `command`, `checked`, run facts and a `findings` array."""

from __future__ import annotations

import json

from shipsure.findings import Report


def render(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"
