"""Image references in a Dockerfile: `FROM` (multi-stage, `--platform`, `ARG` defaults) and
`COPY --from=image`. Pure: text in, `ImageUse`s out.

Follows the Dockerfile reference:
- "An ARG declared before a FROM is outside of a build stage, so it can't be used in any
  instruction after a FROM" -- but it can be used in `FROM` lines; we substitute those
  defaults (`$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}`).
- `FROM <image> AS <name>`: a later `FROM <name>` or `COPY --from=<name>` (or a stage index)
  names a stage, not an image. `scratch` is no image either.
- Lines ending in the escape character (`\\`, or the one set by a `# escape=` directive)
  continue; comment lines inside a continuation are dropped, as BuildKit does.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from shipsure.lint.images import ImageUse

_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*\Z")
_VAR_RE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class _Instruction:
    line: int  # first physical line
    keyword: str  # upper case
    args: str
    parts: tuple[tuple[int, str], ...]  # physical (line number, text) pieces


@dataclass(frozen=True)
class _Arg:
    value: str
    line: int


def _escape_char(lines: list[str]) -> str:
    # Parser directives must come first, before any comment, blank line or instruction.
    for raw in lines:
        m = _DIRECTIVE_RE.match(raw.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            return m.group(2)
    return "\\"


def _instructions(text: str) -> list[_Instruction]:
    lines = text.splitlines()
    escape = _escape_char(lines)
    out: list[_Instruction] = []
    pending: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continuation is dropped
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append((number, body[:-1]))
            continue
        pending.append((number, body))
        joined = " ".join(piece.strip() for _, piece in pending).strip()
        keyword, _, args = joined.partition(" ")
        out.append(_Instruction(pending[0][0], keyword.upper(), args.strip(), tuple(pending)))
        pending = []
    if pending:
        joined = " ".join(piece.strip() for _, piece in pending).strip()
        keyword, _, args = joined.partition(" ")
        out.append(_Instruction(pending[0][0], keyword.upper(), args.strip(), tuple(pending)))
    return out


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args, comments=False, posix=True)
    except ValueError:
        return args.split()


def _parse_arg(instruction: _Instruction, into: dict[str, _Arg]) -> None:
    for token in _split(instruction.args):
        name, eq, value = token.partition("=")
        # `ARG NAME` without a default sets nothing we can know statically.
        if eq:
            into[name] = _Arg(value, instruction.line)


def _substitute(text: str, args: dict[str, _Arg]) -> tuple[str, list[str]]:
    """`text` with ARG defaults substituted, and the names used. Unknown names stay as
    written, so the image is reported as unresolvable rather than guessed."""
    used: list[str] = []

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        arg = args.get(name)
        value = arg.value if arg is not None and arg.value != "" else None
        operator, word = m.group(2), m.group(3) or ""
        if operator == ":-":
            used.append(name)
            return value if value is not None else word
        if operator == ":+":
            used.append(name)
            return word if value is not None else ""
        if value is None:
            return m.group(0)
        used.append(name)
        return value

    return _VAR_RE.sub(replace, text), used


def _locate(instruction: _Instruction, token: str) -> tuple[int, int]:
    for number, piece in instruction.parts:
        col = piece.find(token)
        if col >= 0:
            return number, col + 1
    return instruction.line, 1


def image_uses(text: str, file: str) -> list[ImageUse]:
    """Every image a Dockerfile pulls, with where it is written."""
    global_args: dict[str, _Arg] = {}
    stages: set[str] = set()
    seen_from = False
    uses: list[ImageUse] = []

    def add(instruction: _Instruction, raw: str, source: str) -> None:
        line, column = _locate(instruction, raw)
        resolved, used = _substitute(raw, global_args) if "$" in raw else (raw, [])
        fix_line: int | None = line
        note = ""
        if used:
            first = global_args.get(used[0])
            note = ", ".join(
                f"from ARG {name} (line {global_args[name].line})"
                for name in dict.fromkeys(used)
                if name in global_args
            )
            whole_var = _VAR_RE.fullmatch(raw) is not None
            fix_line = first.line if (whole_var and first is not None) else None
        uses.append(ImageUse(file, line, column, resolved, source, fix_line, note))

    for instruction in _instructions(text):
        if instruction.keyword == "ARG" and not seen_from:
            _parse_arg(instruction, global_args)
        elif instruction.keyword == "FROM":
            seen_from = True
            tokens = [t for t in instruction.args.split() if not t.startswith("--")]
            if not tokens:
                continue
            image = tokens[0]
            stage = tokens[2].lower() if len(tokens) >= 3 and tokens[1].lower() == "as" else None
            if image.lower() not in stages and image.lower() != "scratch":
                add(instruction, image, "Dockerfile FROM")
            if stage:
                stages.add(stage)
        elif instruction.keyword in ("COPY", "ADD"):
            for token in instruction.args.split():
                if not token.startswith("--"):
                    break
                if token.startswith("--from="):
                    source = token.split("=", 1)[1]
                    if source.isdigit() or source.lower() in stages:
                        continue
                    add(instruction, source, f"Dockerfile {instruction.keyword} --from")
    return uses
