"""JSON output is valid for strict readers even when names are not UTF-8: storage and git
hand us such names as lone surrogates (surrogateescape), which RFC 8259 readers refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipsure.findings import Finding, Report, Severity
from shipsure.report import OutputFormat, render

RAW_NAME = b"team/caf\xe9-\xff"  # Latin-1 bytes in a folder name: not UTF-8
NAME = RAW_NAME.decode("utf-8", "surrogateescape")


def _strict_load(text: str) -> Any:
    """Parse as a strict reader does: UTF-8 bytes, no lone surrogates, escaped or not."""
    data = text.encode("utf-8")  # raises on a raw lone surrogate
    try:
        import pydantic_core  # serde_json underneath: refuses escaped lone surrogates

        pydantic_core.from_json(data)
    except ImportError:
        pass
    doc = json.loads(data.decode("utf-8", "strict"))

    def walk(value: Any) -> None:
        if isinstance(value, str):
            value.encode("utf-8")  # a "\udcff" escape decodes to a lone surrogate: raises
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    return doc


def _report(name: str) -> Report:
    report = Report(command="scan")
    report.meta["target"] = f"/var/lib/registry/{name}"
    report.add(
        Finding(
            kind="blob-missing",
            severity=Severity.ERROR,
            message=f"repository {name} lost a layer",
            repository=name,
            path=(f"repositories/{name}/_layers",),
            details={"files": [name], name: 1},
        )
    )
    return report


def test_non_utf8_names_are_written_as_escaped_bytes() -> None:
    doc = _strict_load(render(_report(NAME), OutputFormat.JSON))
    [finding] = doc["findings"]
    assert finding["repository"] == "team/caf\\xe9-\\xff"
    assert finding["message"] == "repository team/caf\\xe9-\\xff lost a layer"
    assert doc["target"].endswith("team/caf\\xe9-\\xff")
    assert finding["files"] == ["team/caf\\xe9-\\xff"] and finding["team/caf\\xe9-\\xff"] == 1


@pytest.mark.parametrize("name", ["team/caf\u00e9", "team/\U0001f600", "team/app"])
def test_valid_unicode_names_are_kept_as_they_are(name: str) -> None:
    doc = _strict_load(render(_report(name), OutputFormat.JSON))
    assert doc["findings"][0]["repository"] == name


def test_a_stray_surrogate_that_no_bytes_made_is_escaped_too() -> None:
    doc = _strict_load(render(_report("team/\ud800x"), OutputFormat.JSON))
    assert doc["findings"][0]["repository"] == "team/\\xed\\xa0\\x80x"


def test_the_unescaped_renderer_would_fail_a_strict_reader() -> None:
    # The fault this guards against: json.dumps writes "\udcff", which strict readers refuse.
    with pytest.raises(Exception, match=r"surrogate|utf-8"):
        _strict_load(json.dumps({"repository": NAME}))
