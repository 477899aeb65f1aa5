"""Module sources out of Terraform and Terragrunt files, fast enough for 500 stacks.

What counts: the literal `source` of a top-level `module "x" { }` block (Terraform) and of a
top-level `terraform { }` block (Terragrunt). Local sources start with `./` or `../`
(Terraform's rule); everything else (registry, git, https, s3) is remote and ignored.

Why not python-hcl2 for every file: it takes ~50 ms per small file here, i.e. tens of
seconds for a 500-stack repository, while `stacks changed` must answer in under a second.
This scanner tokenizes HCL properly (comments, strings with `${}` templates, heredocs,
brackets) but builds no tree; tests check it against python-hcl2. When a file does not
scan, a lenient pattern match is used instead and a warning says so.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, NamedTuple

# Superset prefilter: every local source is a quoted string starting with ./ or ../.
LOCAL_STRING = re.compile(r'"(\.\.?/[^"\n]*)"')

_TOKEN = re.compile(
    r"""
     (?P<space>[ \t\r]+|\\\r?\n)
    |(?P<comment>\#[^\n]*|//[^\n]*)
    |(?P<block_comment>/\*)
    |(?P<heredoc><<-?[ \t]*(?P<tag>[A-Za-z_][\w-]*)[ \t]*\r?\n)
    |(?P<literal>"(?:[^"\\$%\n]+|\\.|\$\$\{|%%\{|[$%](?!\{))*")
    |(?P<quote>")
    |(?P<open>[{\[(])
    |(?P<close>[}\])])
    |(?P<ident>[A-Za-z_][\w-]*)
    |(?P<eq>=(?![=>]))
    |(?P<nl>\n)
    |(?P<other>=>|==|.)
    """,
    re.X | re.S,
)
_STRING_PIECE = re.compile(r'[^"\\$%\n]+|\\.|\$\$\{|%%\{|\$\{|%\{|[$%]|"|\n', re.S)
_CLOSING = {"{": "}", "[": "]", "(": ")"}


class HclScanError(ValueError):
    pass


class _Tok(NamedTuple):
    kind: str  # nl, ident, eq, string, open, close, other
    value: str
    literal: bool = True  # for strings: no ${} or %{} template inside


def _scan_string(text: str, pos: int) -> tuple[str, bool, int]:
    """Read a quoted string whose opening quote ends at `pos`; return (value, literal, end)."""
    parts: list[str] = []
    literal = True
    while True:
        m = _STRING_PIECE.match(text, pos)
        if m is None:
            raise HclScanError("unterminated string")
        piece = m.group()
        pos = m.end()
        if piece == '"':
            return "".join(parts), literal, pos
        if piece == "\n":
            raise HclScanError("newline inside a quoted string")
        if piece in ("${", "%{"):
            literal = False
            pos = _skip_template(text, pos)
        elif piece.startswith("\\"):
            parts.append(piece[1] if piece[1] in '"\\' else piece)
        elif piece in ("$${", "%%{"):
            parts.append(piece[1:])
        else:
            parts.append(piece)


def _skip_template(text: str, pos: int) -> int:
    """Skip a `${ ... }` template expression (which may hold strings and braces)."""
    depth = 1
    while depth:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise HclScanError("unterminated template expression")
        pos = m.end()
        kind = m.lastgroup
        if kind == "quote":
            _, _, pos = _scan_string(text, pos)
        elif kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
        elif kind == "block_comment":
            pos = _skip_block_comment(text, pos)
    return pos


def _skip_block_comment(text: str, pos: int) -> int:
    end = text.find("*/", pos)
    if end < 0:
        raise HclScanError("unterminated /* comment")
    return end + 2


def _tokens(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        assert m is not None  # `other` matches any character
        pos = m.end()
        kind = m.lastgroup or "other"
        if kind in ("space", "comment"):
            if kind == "comment":
                toks.append(_Tok("nl", "\n"))  # a line comment ends the line
            continue
        if kind == "block_comment":
            pos = _skip_block_comment(text, pos)
        elif kind == "heredoc":
            tag = m.group("tag")
            end = re.compile(rf"^[ \t]*{re.escape(tag)}[ \t]*\r?$", re.M).search(text, pos)
            if end is None:
                raise HclScanError(f"unterminated heredoc <<{tag}")
            pos = end.end()
            toks.append(_Tok("string", "", literal=False))
        elif kind == "literal":
            # The common case, matched whole: a string without templates.
            value = m.group()[1:-1]
            if "\\" in value or "$${" in value or "%%{" in value:
                value, _, _ = _scan_string(text, m.start() + 1)
            toks.append(_Tok("string", value, True))
        elif kind == "quote":
            value, literal, pos = _scan_string(text, pos)
            toks.append(_Tok("string", value, literal))
        else:
            toks.append(_Tok(kind, m.group()))
    return toks


_SOURCE_BLOCKS = (("module",), ("terraform",))


def scan_sources(text: str) -> list[str]:
    """Literal `source` values of top-level module/terraform blocks; HclScanError if the
    file is not well-formed enough to tell."""
    toks = _tokens(text)
    toks.append(_Tok("nl", "\n"))
    sources: list[str] = []
    blocks: list[str] = []
    i, n = 0, len(toks)
    while i < n:
        tok = toks[i]
        if tok.kind == "nl":
            i += 1
        elif tok.kind == "close" and tok.value == "}":
            if not blocks:
                raise HclScanError("unbalanced '}'")
            blocks.pop()
            i += 1
        elif tok.kind == "ident" and i + 1 < n and toks[i + 1].kind == "eq":
            value_at = i + 2
            if tuple(blocks) in _SOURCE_BLOCKS and tok.value == "source":
                value = toks[value_at] if value_at < n else None
                after = toks[value_at + 1] if value_at + 1 < n else None
                if (
                    value is not None
                    and value.kind == "string"
                    and value.literal
                    and (after is None or after.kind == "nl" or after.value == "}")
                ):
                    sources.append(value.value)
            i = _skip_expression(toks, value_at)
        elif tok.kind == "ident":
            j = i + 1
            while j < n and toks[j].kind in ("string", "ident"):
                j += 1
            if j >= n or toks[j].value != "{":
                raise HclScanError(f"unexpected token after {tok.value!r}")
            blocks.append(tok.value)
            i = j + 1
        else:
            raise HclScanError(f"unexpected {tok.value!r}")
    if blocks:
        raise HclScanError(f"unclosed block {blocks[-1]!r}")
    return sources


def _skip_expression(toks: list[_Tok], i: int) -> int:
    """Index after an attribute's value: newline at bracket depth 0, or before the `}`
    that closes the enclosing block."""
    stack: list[str] = []
    n = len(toks)
    while i < n:
        tok = toks[i]
        if tok.kind == "open":
            stack.append(_CLOSING[tok.value])
        elif tok.kind == "close":
            if not stack:
                if tok.value == "}":
                    return i
                raise HclScanError(f"unbalanced {tok.value!r}")
            if stack.pop() != tok.value:
                raise HclScanError(f"mismatched {tok.value!r}")
        elif tok.kind == "nl" and not stack:
            return i + 1
        i += 1
    if stack:
        raise HclScanError("unclosed bracket")
    return i


_LENIENT_COMMENT = re.compile(r"/\*.*?\*/|(?m:(?:#|//)[^\n\"]*$)", re.S)
_LENIENT_SOURCE = re.compile(r'\bsource\s*=\s*"([^"\n$]*)"')
_LENIENT_JSON_SOURCE = re.compile(r'"source"\s*:\s*"([^"\n]*)"')


def lenient_sources(text: str) -> list[str]:
    """Fallback for files the scanner refuses: any `source = "..."` outside comments (or
    `"source": "..."`, the JSON syntax)."""
    return _LENIENT_SOURCE.findall(_LENIENT_COMMENT.sub("", text)) + _LENIENT_JSON_SOURCE.findall(
        text
    )


def json_sources(text: str) -> list[str]:
    """`source` values of `module` blocks in Terraform's JSON syntax (`main.tf.json`):
    `{"module": {"name": {"source": ...}}}`, where any block level may also be a list of
    such objects. HclScanError if the text is not JSON."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise HclScanError("nested too deeply") from None
    except ValueError as exc:
        raise HclScanError(str(exc)) from None
    sources: list[str] = []
    for modules in _json_objects(document.get("module") if isinstance(document, dict) else None):
        for body in modules.values():
            for block in _json_objects(body):
                source = block.get("source")
                if isinstance(source, str):
                    sources.append(source)
    return sources


def _json_objects(value: object) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def is_local(source: str) -> bool:
    # Terraform: "A local path must begin with either ./ or ../".
    return source.startswith(("./", "../"))


def resolve_local(folder: str, source: str) -> str:
    """Repository-relative folder a local source points at ("" is the root; a result
    starting with "../" is outside the repository). Terragrunt's `dir//sub` means the
    `sub` folder of a copied `dir`: the folder actually used is `dir/sub`."""
    joined = posixpath.join(folder, source.replace("//", "/")) if folder else source
    resolved = posixpath.normpath(joined.replace("//", "/"))
    return "" if resolved == "." else resolved


def is_outside(path: str) -> bool:
    return path == ".." or path.startswith("../")
