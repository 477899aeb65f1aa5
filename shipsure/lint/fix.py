"""`lint --fix`: pin floating image references to `tag@digest`. Plan, then apply.

`plan_fixes` asks each image's registry for the digest its tag points at now (a HEAD, or a
GET when the registry sends no digest header) and returns a printable plan; it writes
nothing. `apply_plan` carries it out through `shipsure.plan.apply`, one action per file on
disk: just before writing, the file is re-read and compared with what was planned against
(a file edited in between is left alone; one holding the planned result already is done),
the write is journaled before and after, and the new content replaces the old by temp file +
rename. Everything else in the file stays byte for byte as it was.

Symlinks are never replaced by a regular file: a link to a file inside its repository edits
that file, once however many links lead to it; a link that leaves the repository is not
followed, and its pin is reported as not fixed.

A reference that cannot be resolved (variable, registry unreachable, tag unknown) is a plan
entry with a reason, never a guess.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from shipsure.errors import BadInputError, InvalidDigestError, InvalidReferenceError, ShipsureError
from shipsure.fileio import write_atomic
from shipsure.findings import Report
from shipsure.lint.images import ImageUse
from shipsure.lint.rules import location
from shipsure.model import Digest, Reference
from shipsure.plan import (
    Action,
    AlreadyDone,
    Journal,
    Outcome,
    Plan,
    Precondition,
    Ready,
    Refused,
    Result,
    apply,
)
from shipsure.registry.interface import NotFoundError, Registry, RegistryError
from shipsure.registry.wire import InvalidURL
from shipsure.report.terminal import printable

WRITER = "lint-fix"
PIN_OP = "pin-images"
FIXABLE_RULES = frozenset({"PIN001", "PIN002", "PIN003"})
# A reference continues with these characters; a match followed by one is a longer name.
_REF_CHAR = re.compile(r"[A-Za-z0-9._:/@${}-]")


@dataclass(frozen=True)
class FixStep:
    file: str  # as shown in findings
    line: int  # the line the reference is written on
    old: str
    new: str | None  # None: not fixable, see `reason`
    reason: str = ""
    edits: str = ""  # a symlink's in-repository target, when `file` is a link to it


@dataclass(frozen=True)
class FileEdit:
    """One file written once: `path` on disk (a symlink's real target), `shown` (every name
    findings gave it: a link and its target are one file), its sha256 before and after, and
    the changes made in it."""

    path: str
    shown: tuple[str, ...]
    sha256_before: str
    sha256_after: str
    changes: tuple[FixStep, ...]


@dataclass
class FixPlan:
    steps: list[FixStep]
    edits: list[FileEdit] = field(default_factory=list)

    @property
    def changes(self) -> list[FixStep]:
        return [s for s in self.steps if s.new is not None]

    @property
    def unresolved(self) -> list[FixStep]:
        return [s for s in self.steps if s.new is None]

    def to_dict(self) -> dict[str, object]:
        return {
            "changes": [asdict(s) for s in self.changes],
            "unresolved": [asdict(s) for s in self.unresolved],
            "plan": self.to_plan().to_json(),
        }

    def render_text(self) -> str:
        out = [f"fix plan: {len(self.changes)} change(s), {len(self.unresolved)} not fixable"]
        for s in self.changes:
            via = f"  (edits {printable(s.edits)})" if s.edits else ""
            out.append(
                f"  {printable(s.file)}:{s.line}  {printable(s.old)}  ->  {printable(s.new)}{via}"
            )
        for s in self.unresolved:
            out.append(
                f"  {printable(s.file)}:{s.line}  {printable(s.old)}  NOT FIXED: "
                f"{printable(s.reason)}"
            )
        return "\n".join(out) + "\n"

    def to_plan(self) -> Plan:
        """The writes, one action per file on disk, for `shipsure.plan.apply`."""
        actions = [
            Action(
                PIN_OP,
                edit.path,
                ", ".join(edit.shown),
                {
                    "sha256_before": edit.sha256_before,
                    "sha256_after": edit.sha256_after,
                    "changes": [{"line": s.line, "old": s.old, "new": s.new} for s in edit.changes],
                },
            )
            for edit in self.edits
        ]
        return Plan(WRITER, actions)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pinned_text(use: ImageUse, ref: Reference, digest: Digest) -> str:
    # Keep the reference as written (short docker.io names stay short); add the tag a bare
    # name implied, then the digest.
    text = use.text if ref.tag is not None else f"{use.text}:latest"
    return f"{text}@{digest}"


def _open(open_registry: Callable[[str], Registry], host: str) -> Registry:
    """The registry of a reference a file names. A host no request can go to (port 99999:
    a traceback from the URL check) is that reference's problem, reported as not fixed,
    never the end of the run."""
    try:
        return open_registry(host)
    except (ShipsureError, InvalidURL) as exc:
        raise RegistryError(str(exc)) from None


def _resolve(registry: Registry, ref: Reference) -> Digest:
    tag = ref.tag or "latest"
    head = registry.head_manifest(ref.repository, tag)
    if head.digest:
        return Digest.parse(head.digest)
    # No Docker-Content-Digest: hash the manifest bytes as received.
    return Digest.of(registry.get_manifest(ref.repository, tag).raw)


def plan_fixes(
    report: Report,
    images: list[ImageUse],
    disk_path: Callable[[str], Path],
    open_registry: Callable[[str], Registry],
    roots: Sequence[Path] = (),
) -> FixPlan:
    """Plan a pin for every image use that has a PIN001-PIN003 finding in `report` (so a
    disabled rule is never fixed). `open_registry(host)` gives a registry; this function
    closes every one it opened. `roots` are the linted folders: a file outside any git
    repository belongs to the one holding it (see `repository_of`)."""
    flagged = {
        (file, line, column, str(f.details.get("image")))
        for f in report.findings
        if f.kind in FIXABLE_RULES
        for file, line, column in [location(f)]
    }
    registries: dict[str, Registry] = {}
    resolved: dict[str, Digest | str] = {}  # reference -> digest, or why not
    steps: list[FixStep] = []
    try:
        for use in images:
            if (use.file, use.line, use.column, use.text) not in flagged:
                continue
            at = use.fix_line or use.line
            if use.fix_line is None:
                steps.append(
                    FixStep(
                        use.file,
                        use.line,
                        use.text,
                        None,
                        f"assembled from variables ({use.note}); pin by hand",
                    )
                )
                continue
            try:
                ref = Reference.parse(use.text, default_tag=False)
            except InvalidReferenceError as exc:
                steps.append(FixStep(use.file, at, use.text, None, str(exc)))
                continue
            key = f"{ref.name}:{ref.tag or 'latest'}"
            if key not in resolved:
                try:
                    if ref.registry not in registries:
                        registries[ref.registry] = _open(open_registry, ref.registry)
                    resolved[key] = _resolve(registries[ref.registry], ref)
                except NotFoundError:
                    resolved[key] = f"the registry has no tag {ref.tag or 'latest'!r} in {ref.name}"
                except (RegistryError, InvalidDigestError) as exc:
                    resolved[key] = f"could not ask {ref.registry}: {exc}"
            outcome = resolved[key]
            if isinstance(outcome, Digest):
                steps.append(FixStep(use.file, at, use.text, _pinned_text(use, ref, outcome)))
            else:
                steps.append(FixStep(use.file, at, use.text, None, outcome))
    finally:
        for registry in registries.values():
            registry.close()
    return _plan_edits(steps, disk_path, roots)


def repository_of(path: Path, roots: Sequence[Path] = ()) -> Path:
    """The repository a file belongs to: the nearest folder at or above it holding `.git`;
    else the longest linted folder (`roots`) holding it; else its own folder. Symlinks in the
    file's own name are not followed: this is where the link is, not where it points."""
    here = Path(os.path.abspath(path)).parent
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    holding = [Path(os.path.abspath(r)) for r in roots if here.is_relative_to(os.path.abspath(r))]
    return max(holding, key=lambda r: len(r.parts)) if holding else here


def _plan_edits(
    steps: list[FixStep], disk_path: Callable[[str], Path], roots: Sequence[Path]
) -> FixPlan:
    """Map each change to the file on disk it edits. A symlink is never replaced: a link to a
    file inside its repository edits that file (once, however many links lead to it); a
    link that leaves the repository is not followed and its change becomes a note."""
    out: list[FixStep] = []
    reals: list[str] = []  # beside `out`: the file each change edits ("" for none)
    by_real: dict[str, list[FixStep]] = {}
    shown: dict[str, list[str]] = {}
    for step in steps:
        if step.new is None:
            out.append(step)
            reals.append("")
            continue
        path = disk_path(step.file)
        real = os.path.realpath(path)
        repository = os.path.realpath(repository_of(path, roots))
        linked = real != os.path.join(os.path.realpath(path.parent), path.name)
        if not (real == repository or real.startswith(repository.rstrip("/") + "/")):
            why = f"a symlink to {real}, outside the repository {repository}: not followed"
            out.append(replace(step, new=None, reason=why))
            reals.append("")
            continue
        if linked:
            step = replace(
                step, edits=os.path.relpath(real, os.path.dirname(os.path.abspath(path)))
            )
        out.append(step)
        reals.append(real)
        same = by_real.setdefault(real, [])
        if not any((s.line, s.old, s.new) == (step.line, step.old, step.new) for s in same):
            same.append(step)
        if step.file not in shown.setdefault(real, []):
            shown[real].append(step.file)
    edits: list[FileEdit] = []
    for real, changes in by_real.items():
        data = Path(real).read_bytes()
        new_data, missed = rewrite(data, changes)
        lost = {(s.line, s.old, s.new) for s in missed}
        for at, step in enumerate(out):
            if reals[at] == real and (step.line, step.old, step.new) in lost:
                out[at] = replace(step, new=None, reason="reference not found on its line")
        done = tuple(s for s in changes if s not in missed)
        if done:
            edits.append(FileEdit(real, tuple(shown[real]), _sha256(data), _sha256(new_data), done))
    return FixPlan(out, edits)


def _replace_in_line(line: str, old: str, new: str) -> str | None:
    start = 0
    while True:
        at = line.find(old, start)
        if at < 0:
            return None
        end = at + len(old)
        before = line[:at]
        before_ok = not before or not _REF_CHAR.match(before[-1]) or before.endswith("docker://")
        after_ok = end == len(line) or not _REF_CHAR.match(line[end])
        if before_ok and after_ok:
            return line[:at] + new + line[end:]
        start = at + 1


def rewrite(data: bytes, changes: list[FixStep]) -> tuple[bytes, list[FixStep]]:
    """`data` with each change made on its line; returns the new bytes and the changes that
    could not be located (left out)."""
    lines = data.split(b"\n")
    missed: list[FixStep] = []
    for step in changes:
        assert step.new is not None
        index = step.line - 1
        if not 0 <= index < len(lines):
            missed.append(step)
            continue
        text = lines[index].decode("utf-8")
        replaced = _replace_in_line(text, step.old, step.new)
        if replaced is None:
            missed.append(step)
            continue
        lines[index] = replaced.encode("utf-8")
    return b"\n".join(lines), missed


@dataclass
class ApplyResult:
    applied: list[FixStep]
    skipped: list[tuple[FixStep, str]]
    outcomes: list[Outcome] = field(default_factory=list)


class PinWriter:
    """`shipsure.plan.Writer` for file edits: the file must still hold what was planned
    against (its sha256); holding the planned result already is done; a file that became a
    symlink since is left alone."""

    def check(self, action: Action) -> Precondition:
        path = action.target
        if os.path.islink(path):
            return Refused("is a symlink now; a link is never replaced")
        try:
            now = _sha256(Path(path).read_bytes())
        except FileNotFoundError:
            return Refused("file is gone")
        if now == action.facts.get("sha256_after"):
            return AlreadyDone("file holds the pins already")
        if now != action.facts.get("sha256_before"):
            return Refused("file changed since the plan was made")
        return Ready()

    def run(self, action: Action) -> None:
        path = Path(action.target)
        data = path.read_bytes()
        changes = [
            FixStep(path.name, c["line"], c["old"], c["new"]) for c in action.facts["changes"]
        ]
        new_data, missed = rewrite(data, changes)
        if missed or _sha256(new_data) != action.facts.get("sha256_after"):
            raise BadInputError(f"{path}: the rewrite no longer gives the planned content")
        write_atomic(path, new_data, mode=path.stat().st_mode & 0o7777)


def apply_plan(plan: FixPlan, journal: Path) -> ApplyResult:
    """Make the planned changes through `shipsure.plan.apply`: one journaled, re-checked,
    atomic write per file."""
    outcomes = apply(plan.to_plan(), PinWriter(), Journal(journal))
    by_path = {edit.path: edit for edit in plan.edits}
    result = ApplyResult([], [], outcomes)
    for o in outcomes:
        edit = by_path.get(o.action.target)
        if edit is None:
            continue  # settled from an earlier, interrupted run
        steps = [s for s in plan.changes if _edits_file(s, edit)]
        if o.result in (Result.DONE, Result.ALREADY_DONE):
            result.applied += steps
        else:
            result.skipped += [(s, o.reason) for s in steps]
    return result


def _edits_file(step: FixStep, edit: FileEdit) -> bool:
    return step.file in edit.shown and any(
        (c.line, c.old, c.new) == (step.line, step.old, step.new) for c in edit.changes
    )
