"""JSON: one object with `command`, `checked`, run facts and a `findings` array.

Names read from storage or git may hold bytes that are not UTF-8; Python carries them as
lone surrogates (`surrogateescape`), which strict JSON readers refuse (RFC 8259 §8.2: a
text of unpaired surrogates is not interoperable). Such a string is written with each of
those bytes as the four characters `\\xNN` (`backslashreplace`), so the output is always
valid UTF-8 JSON and the raw bytes can still be told.
"""

from __future__ import annotations

import json
from typing import Any

from shipsure.findings import Report


def render(report: Report) -> str:
    return dumps(report.to_dict())


def dumps(value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """`value` as JSON text ending in a newline, undecodable bytes written as `\\xNN`: every
    command's JSON output goes through here."""
    return json.dumps(clean(value), indent=indent, sort_keys=sort_keys) + "\n"


def clean(value: Any) -> Any:
    """`value` with every string that is not valid Unicode respelled (see the module)."""
    return _clean(value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else _clean_text(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _clean_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Undo surrogateescape to the original bytes, then spell the undecodable ones.
        raw = text.encode("utf-8", "surrogateescape" if _escaped_only(text) else "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")
    return text


def _escaped_only(text: str) -> bool:
    """Every surrogate in `text` is one surrogateescape made (U+DC80..U+DCFF)."""
    return all("\udc80" <= c <= "\udcff" for c in text if "\ud800" <= c <= "\udfff")
