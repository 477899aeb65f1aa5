"""Pure renderers: `render(report, fmt) -> str`, one per `OutputFormat` value."""

from __future__ import annotations

import enum
from collections.abc import Callable

from shipsure.findings import Report
from shipsure.report import json_format, prometheus_format, text_format


class OutputFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"
    PROMETHEUS = "prometheus"


RENDERERS: dict[OutputFormat, Callable[[Report], str]] = {
    OutputFormat.TEXT: text_format.render,
    OutputFormat.JSON: json_format.render,
    OutputFormat.PROMETHEUS: prometheus_format.render,
}


def render(report: Report, fmt: OutputFormat) -> str:
    return RENDERERS[fmt](report)
