"""Which stacks a set of changed files touches, and why. Pure apart from reading files
through the `read_text` callable it is handed.

A stack is changed when:

* a file inside it changed (the file maps to its nearest enclosing stack);
* a local module it sources changed — followed through modules that source modules, with
  cycles handled; remote sources are ignored; sources outside the repository are warned
  about, since changes there cannot be seen;
* a file it watches changed (`watch` in the configuration);
* a "parent file" (e.g. `live/prod/env.hcl`) in a folder above it changed;
* a file a Terragrunt unit reads changed: an `include`, a `read_terragrunt_config` file, the
  folder of a `dependency`, a `terraform` source built with `get_repo_root()` and the like
  (see `terragrunt`); a unit whose paths cannot be resolved statically is changed, with a
  warning, whenever anything changed;
* a global file changed: then every stack is changed and `all` is true.

Symbolic links count at both ends: a change to a link's target (or below a linked folder) is
also a change at the link's path, which git does not report (see `links`).

A module folder counts as changed when any file under it changed (files are read by path
from templates too, so this errs on the side of running a stack).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipsure.stacks import terragrunt
from shipsure.stacks.config import StacksConfig
from shipsure.stacks.discovery import (
    ancestors,
    can_be_stack,
    display,
    find_stacks,
    is_hcl_source,
    is_marker,
    nearest_stack,
    stacks_below,
)
from shipsure.stacks.git import FileChange
from shipsure.stacks.links import Links
from shipsure.stacks.pathglob import covers, first_match, matches
from shipsure.stacks.sources import (
    LOCAL_STRING,
    HclScanError,
    is_local,
    is_outside,
    json_sources,
    lenient_sources,
    resolve_local,
    scan_sources,
)

MAX_FILES_PER_REASON = 5


@dataclass
class StackChange:
    path: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": display(self.path), "reasons": list(self.reasons)}


@dataclass
class ChangedStacks:
    stacks: list[StackChange]
    all: bool
    deleted: list[StackChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.stacks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stacks": [s.to_dict() for s in self.stacks],
            "all": self.all,
            "deleted": [s.to_dict() for s in self.deleted],
            "baseline": dict(self.baseline),
            "warnings": list(self.warnings),
        }


ReadText = Callable[[str], str | None]


# Terragrunt's `terragrunt.stack.hcl` generates its units into `.terragrunt-stack/` when run
# (`terragrunt stack run`); neither the generated units nor that command are modelled here.
TERRAGRUNT_STACK_FILE = "terragrunt.stack.hcl"


def not_understood(files: Iterable[str]) -> list[str]:
    """Warnings for files that define stacks shipsure cannot see, so a result that leaves
    them out is never taken as complete."""
    found = [f for f in files if posixpath.basename(f) == TERRAGRUNT_STACK_FILE]
    if not found:
        return []
    shown = ", ".join(found[:MAX_FILES_PER_REASON])
    more = (
        f" and {len(found) - MAX_FILES_PER_REASON} more"
        if len(found) > MAX_FILES_PER_REASON
        else ""
    )
    return [
        f"Terragrunt stack files ({shown}{more}) are not understood: the units they generate "
        "are not listed, and changes to them or to the units they use are not detected"
    ]


def all_stacks(
    files: Iterable[str], config: StacksConfig, reason: str, links: Links | None = None
) -> ChangedStacks:
    links = links or Links()
    files = list(files)
    stacks = find_stacks(links.expand(files), config, links)
    return ChangedStacks(
        [StackChange(s, [reason]) for s in stacks], all=True, warnings=not_understood(files)
    )


def detect(
    files: Sequence[str],
    changes: Sequence[FileChange],
    config: StacksConfig,
    read_text: ReadText,
    links: Links | None = None,
) -> ChangedStacks:
    links = links or Links()
    files = links.expand(files)
    stacks = find_stacks(files, config, links)
    stack_set = set(stacks)
    reasons: dict[str, list[str]] = {}
    warnings: list[str] = not_understood(files)

    def add(stack: str, reason: str) -> None:
        bucket = reasons.setdefault(stack, [])
        if reason not in bucket:
            bucket.append(reason)

    real = sorted({c.path for c in changes})
    # Where git's changes are also seen through links: `alias -> the path git reported`.
    seen_as: dict[str, str] = {}
    for path in real:
        for alias in links.aliases(path):
            seen_as.setdefault(alias, path)
    paths = sorted(set(real) | set(seen_as))
    for link in links.outside:
        warnings.append(f"link {link} leaves the repository; changes to it are not detected")

    global_hits = [p for p in paths if covers(p, config.globals)]
    for stack in stacks:
        for reason in _file_reasons("global file", global_hits):
            add(stack, reason)

    direct: dict[str, list[str]] = {}
    for path in paths:
        owner = nearest_stack(path, stack_set)
        if owner is not None:
            direct.setdefault(owner, []).append(path)
        elif path not in global_hits and first_match(posixpath.basename(path), config.parent_files):
            for stack in stacks_below(posixpath.dirname(path), stacks):
                add(stack, f"parent file {path} changed")
    for stack, changed_files in direct.items():
        for reason in _file_reasons("file", [p for p in changed_files if p not in seen_as]):
            add(stack, reason)
        linked = [p for p in changed_files if p in seen_as]
        for path in linked[:MAX_FILES_PER_REASON]:
            add(stack, f"file {seen_as[path]} changed, linked here as {path}")
        if len(linked) > MAX_FILES_PER_REASON:
            add(stack, f"and {len(linked) - MAX_FILES_PER_REASON} more linked files changed")

    for stack_pattern, file_patterns in config.watch.items():
        hits = [p for p in paths if covers(p, file_patterns)]
        if hits:
            for stack in stacks:
                if matches(stack, stack_pattern):
                    for reason in _file_reasons("watched file", hits):
                        add(stack, reason)

    for stack, reason in _module_reasons(files, paths, stack_set, read_text, warnings):
        add(stack, reason)

    if paths:
        for stack, reason in _terragrunt_reasons(
            files, paths, stacks, reasons, read_text, warnings
        ):
            add(stack, reason)

    deleted = sorted(
        {
            posixpath.dirname(c.path)
            for c in changes
            if c.status == "D"
            and is_marker(posixpath.basename(c.path), config)
            and posixpath.dirname(c.path) not in stack_set
            and can_be_stack(posixpath.dirname(c.path), config)
        }
    )
    return ChangedStacks(
        stacks=[StackChange(s, reasons[s]) for s in stacks if s in reasons],
        all=bool(global_hits) and bool(stacks),
        deleted=[StackChange(d, ["stack folder removed (no marker file left)"]) for d in deleted],
        warnings=warnings,
    )


def _terragrunt_reasons(
    files: Sequence[str],
    changed_paths: Sequence[str],
    stacks: Sequence[str],
    reasons: dict[str, list[str]],
    read_text: ReadText,
    warnings: list[str],
) -> list[tuple[str, str]]:
    """Reasons from what Terragrunt units read (includes, read configs, dependencies,
    evaluated sources); a unit whose paths cannot be resolved is changed, with a warning."""
    file_set = frozenset(files)
    found: list[tuple[str, str]] = []
    dependencies: dict[str, list[str]] = {}
    for stack in stacks:
        unit_file = posixpath.join(stack, terragrunt.UNIT_FILE) if stack else terragrunt.UNIT_FILE
        if unit_file not in file_set:
            continue
        result = terragrunt.unit_reads(stack, file_set, read_text, terragrunt.parse_hcl)
        for read in result.reads:
            below = (f"{read.path}/" if read.path else "") if read.folder else None
            hits = [
                p
                for p in changed_paths
                if p == read.path
                or (below is not None and p.startswith(below))
                # A submodule whose commit moved is one changed path above what it holds.
                or read.path.startswith(f"{p}/")
            ]
            if read.folder and read.why.startswith(("dependency", "depends")):
                dependencies.setdefault(stack, []).append(read.path)
                hits = [] if read.path == stack else hits
            if hits:
                shown = ", ".join(hits[:MAX_FILES_PER_REASON])
                more = len(hits) - MAX_FILES_PER_REASON
                tail = f" and {more} more" if more > 0 else ""
                found.append((stack, f"{read.why}: {shown}{tail} changed"))
        for message in result.outside:
            warnings.append(f"{message}; changes to it are not detected")
        for message in result.unresolved:
            warnings.append(f"{message}; stack {display(stack)} is treated as changed")
            found.append((stack, f"treated as changed: {message}"))
    # A unit whose dependency changed for any reason reads that dependency's new outputs.
    changed = {s for s, _ in found} | set(reasons)
    progress = True
    while progress:
        progress = False
        for stack, targets in dependencies.items():
            for target in targets:
                if target in changed and target != stack:
                    reason = f"dependency {display(target)} is changed"
                    if (stack, reason) not in found:
                        found.append((stack, reason))
                        progress = stack not in changed or progress
                        changed.add(stack)
    return found


def _file_reasons(what: str, paths: Sequence[str]) -> list[str]:
    shown = [f"{what} {p} changed" for p in paths[:MAX_FILES_PER_REASON]]
    if len(paths) > MAX_FILES_PER_REASON:
        shown.append(f"and {len(paths) - MAX_FILES_PER_REASON} more {what}s changed")
    return shown


@dataclass(frozen=True)
class _Ref:
    """A quoted local-looking string in an HCL file: maybe a module source."""

    file: str
    folder: str
    raw: str
    target: str


@dataclass(frozen=True)
class _Cause:
    """Why a folder counts as changed: a changed file under it, or (via) a module that
    `user` sources."""

    changed_file: str = ""
    user: str = ""
    via: str = ""


class _SourceReader:
    """Confirms candidate strings with the scanner, once per file, warning on fallbacks."""

    def __init__(self, read_text: ReadText, warnings: list[str]) -> None:
        self.read_text = read_text
        self.warnings = warnings
        self.cache: dict[str, frozenset[str]] = {}

    def targets(self, path: str) -> frozenset[str]:
        if path not in self.cache:
            text = self.read_text(path) or ""
            try:
                sources = json_sources(text) if path.endswith(".json") else scan_sources(text)
            except HclScanError as exc:
                self.warnings.append(
                    f"{path}: could not parse as {'JSON' if path.endswith('.json') else 'HCL'} "
                    f"({exc}); "
                    "read its module sources with a pattern match instead"
                )
                sources = lenient_sources(text)
            folder = posixpath.dirname(path)
            self.cache[path] = frozenset(resolve_local(folder, s) for s in sources if is_local(s))
        return self.cache[path]


def _module_reasons(
    files: Sequence[str],
    changed_paths: Sequence[str],
    stacks: set[str],
    read_text: ReadText,
    warnings: list[str],
) -> list[tuple[str, str]]:
    refs: list[_Ref] = []
    texts: dict[str, str] = {}  # files with candidates, read once
    for path in files:
        if not is_hcl_source(path):
            continue
        text = read_text(path)
        if not text or ('"./' not in text and '"../' not in text):
            continue
        texts[path] = text
        folder = posixpath.dirname(path)
        for raw in dict.fromkeys(LOCAL_STRING.findall(text)):
            refs.append(_Ref(path, folder, raw, resolve_local(folder, raw)))

    reader = _SourceReader(lambda p: texts[p] if p in texts else read_text(p), warnings)
    for ref in refs:
        if is_outside(ref.target) and ref.target in reader.targets(ref.file):
            warnings.append(
                f"{ref.file}: module source {ref.raw} is outside the repository; "
                "changes to it are not detected"
            )

    # Folders (and files) that count as changed, with the first cause seen.
    touched: dict[str, _Cause] = {}
    for path in changed_paths:
        for entry in (path, *ancestors(path)):
            touched.setdefault(entry, _Cause(changed_file=path))

    def explain(target: str) -> str:
        cause = touched[target]
        if cause.changed_file:
            return f"{cause.changed_file} changed"
        return f"{cause.user} uses {cause.via}; {explain(cause.via)}"

    # A changed path with a module below it is a folder git reports as one entry: a
    # submodule whose commit moved (or a file replaced by a folder). Everything under it
    # may have changed.
    changed_set = frozenset(changed_paths)
    for ref in refs:
        if ref.target not in touched:
            above = next((a for a in ancestors(ref.target) if a in changed_set), None)
            if above is not None:
                touched[ref.target] = _Cause(changed_file=above)

    found: list[tuple[str, str]] = []
    pending = [r for r in refs if not is_outside(r.target)]
    progress = True
    while progress and pending:  # a fixpoint: each round follows one more module hop
        progress = False
        waiting: list[_Ref] = []
        for ref in pending:
            if ref.target not in touched:
                waiting.append(ref)
                continue
            if ref.target not in reader.targets(ref.file):
                continue  # a comment or an attribute other than a module source
            if ref.folder in stacks:
                why = f"module {display(ref.target)} changed: {explain(ref.target)}"
                found.append((ref.folder, why))
            # The folder using the module is a changed module itself, for its own users.
            cause = _Cause(user=ref.folder, via=ref.target)
            for entry in (ref.folder, *ancestors(ref.folder)):
                if entry not in touched:
                    touched[entry] = cause
                    progress = True
        pending = waiting
    return found
