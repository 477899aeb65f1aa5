"""Run shipsure as its own process, as a user would: in a chosen working folder, with its
state folder under the test's tmp_path, optionally killed at a point of `shipsure.plan.apply`
(the `SHIPSURE_TEST_CRASH_AT` hook: os._exit, no clean-up, like SIGKILL)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from shipsure import plan

ROOT = Path(__file__).resolve().parent.parent


def run_shipsure(
    args: list[str],
    *,
    cwd: Path,
    state_home: Path,
    crash: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in (plan.CRASH_ENV, plan.STATE_DIR_ENV, "XDG_STATE_HOME")
    }
    environ |= {"PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(state_home), "HOME": str(state_home)}
    environ |= env or {}
    if crash:
        environ[plan.CRASH_ENV] = crash
    return subprocess.run(
        [sys.executable, "-m", "shipsure", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under `root` (not following links): a file's sha256, a link's target, a
    folder's mark; the tree's state to compare before and after."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
