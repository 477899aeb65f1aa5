"""Durable local writes, done the way the registry does them: temp file beside the target,
fsync, then rename, so a reader (or a crash) only ever sees the old or the new content.

Raises OSError; callers turn it into the error of their own family.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data`; `mode` sets the new file's permission bits (the temp
    file's 0600 otherwise). Creates missing parent folders; never leaves the temp file."""
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_json_line(path: str | Path, record: Mapping[str, object]) -> None:
    """Append one JSON object as a line to a journal and fsync it before returning."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
