"""Symbolic links in a stacks repository. Pure: link paths and their targets in, aliases out.

Git tracks a link as a small file holding its target, and reports a change only at the path
that changed: editing `platform/variables.tf` shows `platform/variables.tf`, never the
`live/prod/a/variables.tf` that links to it, nor the files of a linked folder. So every link
is resolved to the repository path it names, and each change below a target is also seen at
the link's own path (an *alias*): the stack holding the link is changed too.

Links that leave the repository (or are absolute) cannot be followed: they are returned
separately, for a warning.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Links to links to ...: real repositories chain one or two.
MAX_LINK_HOPS = 8


@dataclass
class Links:
    """Resolved links: `targets[link] = target` (repository-relative, "" for the root)."""

    targets: dict[str, str] = field(default_factory=dict)
    outside: list[str] = field(default_factory=list)  # "link -> raw target" for warnings
    # Filled by `expand`: a path seen below a linked folder -> the tracked path it shows.
    alias_of: dict[str, str] = field(default_factory=dict)

    def aliases(self, path: str) -> list[str]:
        """Every other path at which `path` is seen through links (links of links too)."""
        if not self.targets:
            return []
        found: list[str] = []
        frontier = [path]
        for _ in range(MAX_LINK_HOPS):
            following: list[str] = []
            for current in frontier:
                for link, target in self.targets.items():
                    if current == target:
                        alias = link
                    elif target == "" or current.startswith(target + "/"):
                        alias = posixpath.join(link, current[len(target) :].lstrip("/"))
                    else:
                        continue
                    if alias != path and alias not in found:
                        found.append(alias)
                        following.append(alias)
            if not following:
                break
            frontier = following
        return found

    def expand(self, files: Iterable[str]) -> list[str]:
        """`files` plus the paths the files below linked folders are also seen at."""
        listed = list(files)
        seen = set(listed)
        out = list(listed)
        for path in listed:
            for alias in self.aliases(path):
                if alias not in seen:
                    seen.add(alias)
                    out.append(alias)
                    self.alias_of[alias] = path
        return out

    def shared_only(self, folder: str, names: Iterable[str]) -> bool:
        """The folder's marker files (`names`) are all targets of links from elsewhere: it
        holds shared files that stacks run from through links, not a stack of its own."""
        shared = {t for link, t in self.targets.items() if posixpath.dirname(link) != folder}
        paths = [posixpath.join(folder, n) if folder else n for n in names]
        return bool(paths) and all(p in shared for p in paths)


def resolve(raw: Mapping[str, str]) -> Links:
    """`raw[link] = target as written in the link`, both as git lists them."""
    links = Links()
    for link, target in raw.items():
        if posixpath.isabs(target):
            links.outside.append(f"{link} -> {target}")
            continue
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
        if joined == ".." or joined.startswith("../"):
            links.outside.append(f"{link} -> {target}")
            continue
        links.targets[link] = "" if joined == "." else joined
    return links
