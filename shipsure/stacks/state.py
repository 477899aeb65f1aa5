"""What shipsure remembers between runs, under the state folder (default
`.shipsure/state` at the repository root; `state_dir` in the configuration, or
`--state-dir`, points it at a folder CI keeps between pipelines):

* `last-applied` — the commit of the last `stacks run apply` in which every selected stack
  applied successfully; `stacks changed --since-last-apply` diffs against it;
* `drift.json` — each stack's last drift status, so alerts fire on transitions only;
* `journal.jsonl` — `locks break --apply`'s journal (`shipsure.plan`: intent and result of
  each break, JSON lines).

Every write goes to a temp file in the same folder and is renamed into place, so a crash
never leaves half a file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shipsure import fileio
from shipsure.errors import BadInputError, CouldNotRunError

LAST_APPLIED = "last-applied"
DRIFT_STATE = "drift.json"
MAX_STATE_BYTES = 16 * 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def write_atomic(path: Path, text: str) -> None:
    try:
        fileio.write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise CouldNotRunError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _read(path: Path) -> bytes | None:
    """A state file's bytes (at most the limit + 1), None when it does not exist. Only a
    regular file: a FIFO there must not hang every run, a device not be read forever."""
    try:
        return fileio.read_regular(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CouldNotRunError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_last_applied(state_dir: Path) -> str | None:
    path = state_dir / LAST_APPLIED
    raw = _read(path)
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip()
    if not _SHA.fullmatch(text):
        raise BadInputError(f"{path}: expected one commit id, found {text[:60]!r}")
    return text


def write_last_applied(state_dir: Path, commit: str) -> None:
    write_atomic(state_dir / LAST_APPLIED, commit + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None when the file does not exist."""
    raw = _read(path)
    if raw is None:
        return None
    if len(raw) > MAX_STATE_BYTES:
        raise BadInputError(f"{path}: larger than {MAX_STATE_BYTES} bytes; not a state file")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
