"""Which folders are stacks, from the list of tracked files. Pure.

A stack is a folder directly holding a file whose name matches a marker (`*.tf`,
`terragrunt.hcl`), unless the folder matches an `exclude` pattern (shared modules) or is
the repository root (whose `terragrunt.hcl` is the shared parent, not a stack) and
`root_is_stack` is off. Folders are repository-relative POSIX paths; "" is the root, shown
as "." to people.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable

from shipsure.stacks.config import StacksConfig
from shipsure.stacks.pathglob import first_match

HCL_SUFFIXES = (".tf", ".hcl")


def display(folder: str) -> str:
    return folder or "."


def is_marker(name: str, config: StacksConfig) -> bool:
    return any(fnmatch.fnmatchcase(name, marker) for marker in config.markers)


def can_be_stack(folder: str, config: StacksConfig) -> bool:
    if folder == "":
        return config.root_is_stack
    return first_match(folder, config.exclude) is None


def find_stacks(files: Iterable[str], config: StacksConfig) -> list[str]:
    candidates: set[str] = set()
    for path in files:
        folder, name = posixpath.split(path)
        if folder not in candidates and is_marker(name, config):
            candidates.add(folder)
    return sorted(folder for folder in candidates if can_be_stack(folder, config))


def ancestors(path: str) -> list[str]:
    """Folders above `path`, nearest first, ending with the root ""."""
    out: list[str] = []
    while path:
        path = posixpath.dirname(path)
        out.append(path)
    return out


def nearest_stack(path: str, stacks: set[str]) -> str | None:
    """The stack a file belongs to: the closest enclosing stack folder."""
    for folder in ancestors(path):
        if folder in stacks:
            return folder
    return None


def stacks_below(folder: str, stacks: Iterable[str]) -> list[str]:
    if folder == "":
        return list(stacks)
    prefix = folder + "/"
    return [s for s in stacks if s == folder or s.startswith(prefix)]


def is_hcl_source(path: str) -> bool:
    return path.endswith(HCL_SUFFIXES) and "/.terraform/" not in f"/{path}"
