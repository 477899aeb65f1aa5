"""Which folders are stacks, from the list of tracked files. Pure.

A stack is a folder directly holding a file whose name matches a marker (`*.tf`,
`terragrunt.hcl`), unless the folder matches an `exclude` pattern (shared modules) or is
the repository root (whose `terragrunt.hcl` is the shared parent, not a stack) and
`root_is_stack` is off. A folder whose marker files are all symbolic-link targets of files in
other folders (a `shared/providers.tf` linked into every stack) holds shared files, not a
stack, unless it matches an `include` pattern. Folders are repository-relative POSIX paths;
"" is the root, shown as "." to people.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable

from shipsure.stacks.config import StacksConfig
from shipsure.stacks.links import Links
from shipsure.stacks.pathglob import covers, first_match

# Files that can hold module sources: Terraform and OpenTofu, native and JSON syntax.
HCL_SUFFIXES = (".tf", ".hcl", ".tofu", ".tf.json", ".tofu.json")


def display(folder: str) -> str:
    return folder or "."


def is_marker(name: str, config: StacksConfig) -> bool:
    return any(fnmatch.fnmatchcase(name, marker) for marker in config.markers)


def can_be_stack(folder: str, config: StacksConfig) -> bool:
    if folder == "":
        return config.root_is_stack
    return not covers(folder, config.exclude)


def find_stacks(
    files: Iterable[str], config: StacksConfig, links: Links | None = None
) -> list[str]:
    candidates: dict[str, list[str]] = {}
    for path in files:
        folder, name = posixpath.split(path)
        if is_marker(name, config):
            candidates.setdefault(folder, []).append(name)

    def accepted(folder: str, names: list[str]) -> bool:
        if not can_be_stack(folder, config):
            return False
        if links is None or first_match(folder, config.include) is not None:
            return True
        paths = [posixpath.join(folder, n) if folder else n for n in names]
        if all(p in links.alias_of for p in paths):
            # Seen only through a linked folder: a stack when the folder it shows is one
            # (a linked stack), not when it is a module or shared files used from here.
            real = posixpath.dirname(links.alias_of[paths[0]])
            return real in candidates and accepted(real, candidates[real])
        return not links.shared_only(folder, names)

    return sorted(folder for folder, names in candidates.items() if accepted(folder, names))


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
