"""Image references in a Dockerfile: `FROM` (multi-stage, `--platform`, `ARG` defaults),
`COPY --from=image` / `ADD --from` and `RUN --mount=...,from=image`. Pure: text in,
`ImageUse`s out.

The text is split into instructions by BuildKit's own parser (PyPI `dockerfile`, a binding of
`github.com/moby/buildkit/frontend/dockerfile/parser`), so everything its grammar says holds
here too: parser directives (`# escape=`), continuations and comments inside them, JSON and
shell forms, heredocs (their bodies are data: a `from flask import Flask` line inside
`COPY <<EOF` is no `FROM`), a leading UTF-8 byte-order mark and any whitespace after the
keyword. Line numbers are the parser's.

What we add on top, from the Dockerfile reference:
- "An ARG declared before a FROM is outside of a build stage, so it can't be used in any
  instruction after a FROM" -- but it can be used in `FROM` lines; we substitute those
  defaults (`$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}`).
- `FROM <image> AS <name>`: a later `FROM <name>` or `COPY --from=<name>` (or a stage index)
  names a stage, not an image. `scratch` is no image either.
"""

from __future__ import annotations

import csv
import re
import shlex
from dataclasses import dataclass
from typing import Any

from shipsure.errors import BadInputError
from shipsure.lint.images import ImageUse

_VAR_RE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
_BOM = "\ufeff"


@dataclass(frozen=True)
class _Instruction:
    line: int  # first physical line
    keyword: str  # upper case
    flags: tuple[str, ...]  # `--platform=...`, `--from=...`
    words: tuple[str, ...]  # the arguments after the flags, as the parser split them
    lines: tuple[tuple[int, str], ...]  # physical (line number, text) lines of the instruction


@dataclass(frozen=True)
class _Arg:
    value: str
    line: int


class DockerfileSyntaxError(BadInputError):
    """BuildKit's parser refused the file (the build would fail the same way), or is not
    installed; the message says which."""


def _instructions(text: str) -> list[_Instruction]:
    """The file's instructions as BuildKit splits them. Raises `DockerfileSyntaxError`."""
    text = text.removeprefix(_BOM)
    try:
        import dockerfile as buildkit
    except ImportError:
        raise DockerfileSyntaxError(
            "BuildKit's Dockerfile parser is not installed: pip install 'shipsure[lint]'"
        ) from None
    try:
        commands: tuple[Any, ...] = buildkit.parse_string(text)
    except buildkit.GoParseError as exc:
        if "no instructions" in str(exc):
            return []
        raise DockerfileSyntaxError(f"BuildKit's parser refuses it: {exc}") from None
    physical = text.splitlines()
    out: list[_Instruction] = []
    for cmd in commands:
        start, end = int(cmd.start_line), int(cmd.end_line)
        if cmd.heredocs:
            end = start  # the lines after the first are heredoc bodies: data, not arguments
        lines = tuple((n, physical[n - 1]) for n in range(start, end + 1) if n <= len(physical))
        out.append(
            _Instruction(start, str(cmd.cmd).upper(), tuple(cmd.flags), tuple(cmd.value), lines)
        )
    return out


def _parse_arg(instruction: _Instruction, into: dict[str, _Arg]) -> None:
    for word in instruction.words:
        name, eq, value = word.partition("=")
        # `ARG NAME` without a default sets nothing we can know statically.
        if eq:
            try:
                unquoted = shlex.split(value, posix=True)
            except ValueError:
                unquoted = [value]
            into[name] = _Arg(" ".join(unquoted), instruction.line)


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
    for number, piece in instruction.lines:
        col = piece.find(token)
        if col >= 0:
            if number == 1 and piece.startswith(_BOM):
                col -= 1
            return number, col + 1
    return instruction.line, 1


def image_uses(text: str, file: str) -> list[ImageUse]:
    """Every image a Dockerfile pulls, with where it is written. Raises
    `DockerfileSyntaxError` when BuildKit's parser refuses the file."""
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
            words = instruction.words
            if not words:
                continue
            image = words[0]
            stage = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            if image.lower() not in stages and image.lower() != "scratch":
                add(instruction, image, "Dockerfile FROM")
            if stage:
                stages.add(stage)
        elif instruction.keyword in ("COPY", "ADD"):
            for flag in instruction.flags:
                if flag.startswith("--from="):
                    source = flag.split("=", 1)[1]
                    if source.isdigit() or source.lower() in stages:
                        continue
                    add(instruction, source, f"Dockerfile {instruction.keyword} --from")
        elif instruction.keyword == "RUN":
            for flag in instruction.flags:
                mounted = _mount_from(flag)
                if mounted and not mounted.isdigit() and mounted.lower() not in stages:
                    add(instruction, mounted, "Dockerfile RUN --mount from")
    return uses


def _mount_from(flag: str) -> str | None:
    """The `from=` of a `RUN --mount=type=bind|cache,from=<stage or image>,...` (BuildKit
    pulls an image named there like a `COPY --from`)."""
    if not flag.startswith("--mount="):
        return None
    for field in next(csv.reader([flag.split("=", 1)[1]]), []):
        key, eq, value = field.partition("=")
        if eq and key.strip().lower() == "from" and value:
            return value.strip()
    return None
