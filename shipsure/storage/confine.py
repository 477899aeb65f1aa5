"""Never act through a symlink that leaves the storage root.

Distribution never creates symlinks in its layout, so a link there was put by someone
else; following one that resolves outside the root would let a repair write or delete
anywhere on the host (shipsure often runs as root). `escape(root, path)` finds the first
component of `root/path`, the last one included, that is a symlink resolving outside the
root; links that stay inside the root are allowed.

The check runs just before each write or delete. What it cannot stop is a link swapped in
between the check and the system call by someone who can already write to the storage.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Escape:
    """`link` (relative to the root) is a symlink that resolves to `target`, outside."""

    link: str
    target: str

    def describe(self) -> str:
        return f"{self.link} is a symlink to {self.target}, outside the storage root"


def inside(folder: str, path: str) -> bool:
    """Whether the resolved `path` is `folder` or below it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def escape(root: str, path: str) -> Escape | None:
    """The first symlink on the way from `root` to `root/path` that resolves outside the
    root, or None. A component that does not exist ends the walk: what is created below
    an existing folder inside the root stays inside it. `..` components count as leaving."""
    real_root = os.path.realpath(root)
    current = root
    done: list[str] = []
    for part in path.split("/"):
        if not part or part == ".":
            continue
        done.append(part)
        if part == "..":
            return Escape("/".join(done), "..")
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            resolved = os.path.realpath(current)
            if not inside(real_root, resolved):
                return Escape("/".join(done), resolved)
    return None
