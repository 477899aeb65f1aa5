"""Helm chart templates and other YAML with Go template actions (`{{ ... }}`), read for the
images written in them literally. Pure.

Such a file is not YAML until rendered, so it is made YAML without moving anything: a line
holding only actions (`{{- if .Values.x }}`, `{{ include "labels" . | nindent 4 }}`)
becomes empty, and every other action is replaced by a placeholder of the same length
(`${_7____}`), so each remaining value keeps its line and column. Every branch of an `if`
is kept: an image written in any of them is reported. Placeholders are read back into the
actions they stand for, so a templated image is reported as written (PIN005: it cannot be
judged until rendered). Rendered output (`helm template`) remains the complete answer.
"""

from __future__ import annotations

import dataclasses
import re

from shipsure.lint.images import ImageUse

# An action never holds `}}`, so a line splits into actions one way only (no backtracking
# blow-up on a line of many actions).
_ACTION = re.compile(r"\{\{(?:(?!\}\}).)*\}\}")
_ONLY_ACTIONS = re.compile(r"[ \t]*(?:\{\{(?:(?!\}\}).)*\}\}[ \t]*)+\r?\Z")
_PLACEHOLDER = re.compile(r"\$\{_[0-9a-f]*_*\}")


@dataclasses.dataclass(frozen=True)
class Neutralized:
    text: str
    actions: dict[str, str]  # placeholder -> the action it replaced

    def restore(self, use: ImageUse) -> ImageUse:
        """`use` with the actions back in its text and its source (`Deployment {{ ... }}`)."""
        text = self._back(use.text)
        if text == use.text and "${_" not in use.source:
            return use
        # A reference holding an action is not written literally: nothing for --fix.
        fix_line = use.fix_line if text == use.text else None
        return dataclasses.replace(use, text=text, source=self._back(use.source), fix_line=fix_line)

    def _back(self, value: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.actions.get(m.group(), m.group()), value)


def _blank_multiline_actions(text: str) -> str:
    """Actions over several lines (a `{{/* comment */}}` block, a long `dict`) blanked out,
    newlines kept. One pass with `find`: linear even in a file of unclosed `{{`."""
    pieces: list[str] = []
    done = 0
    while (start := text.find("{{", done)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            break
        end += 2
        if "\n" in text[start:end]:
            pieces.append(text[done:start])
            pieces.append(re.sub(r"[^\n]", " ", text[start:end]))
        else:
            pieces.append(text[done:end])
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def neutralize(text: str) -> Neutralized:
    """`text` with its template actions made YAML-safe, lines and columns unchanged."""
    actions: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        action = match.group()
        name = f"${{_{len(actions):x}".ljust(len(action) - 1, "_") + "}"
        if len(name) != len(action):  # too short to number: an anonymous placeholder
            name = "${" + "_" * (len(action) - 3) + "}"
        actions.setdefault(name, action)
        return name

    text = _blank_multiline_actions(text)
    lines = []
    for line in text.split("\n"):
        # Only up to the last `}}`: an unclosed `{{` after it can start no action, and
        # trying each one to the end of a long line would take quadratic time.
        cut = line.rfind("}}") + 2
        if cut < 2:
            lines.append(line)
        elif line.rstrip().endswith("}}") and _ONLY_ACTIONS.match(line):
            lines.append("")
        else:
            lines.append(_ACTION.sub(placeholder, line[:cut]) + line[cut:])
    return Neutralized("\n".join(lines), actions)
