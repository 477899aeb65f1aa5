"""Text that is safe to print to a terminal.

File names, repository names from a registry's catalog, tags and registry error messages
are not ours: a name holding ESC can recolour or clear the terminal, a newline can forge a
finding line, and bidirectional overrides (Trojan Source, CVE-2021-42574) can reorder what
is shown. Text output escapes them the way Python's `repr` does; JSON and SARIF carry the
exact value.

Names read from storage may also hold bytes that are not UTF-8, which Python carries as lone
surrogates (`surrogateescape`): printed as they are, they either reach the terminal as raw
bytes or end the run with UnicodeEncodeError. Text writes each such byte as `\\xNN`, the
spelling JSON output uses (report/json_format.py).
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode bidirectional embeddings, overrides and isolates, and
# surrogates (undecodable bytes, or a stray one no bytes made).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        # The bytes it stands for: one byte for surrogateescape's U+DC80..U+DCFF, else the
        # three bytes of its UTF-8 form (as json_format writes it).
        handler = "surrogateescape" if code >= 0xDC80 else "surrogatepass"
        return "".join(f"\\x{b:02x}" for b in char.encode("utf-8", handler))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` as a string with every control or bidi character written as `\\xNN` or
    `\\uNNNN` (a tab too: it would misalign columns), and every undecodable byte as `\\xNN`."""
    return _UNSAFE.sub(_escape, str(text))


def one_line(text: object, limit: int = 1000) -> str:
    """`printable(text)` cut to about `limit` characters in the middle, saying how much was
    cut: an error line echoes its input, an input can be 100 KB, and the reason is at the
    end."""
    shown = printable(text)
    if len(shown) <= limit:
        return shown
    half = limit // 2
    return f"{shown[:half]}…({len(shown) - 2 * half} characters)…{shown[-half:]}"
