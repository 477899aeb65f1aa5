"""`lint --fix`: pin floating image references to `tag@digest`. Plan, then apply.

`plan_fixes` asks each image's registry for the digest its tag points at now (a HEAD, or a
GET when the registry sends no digest header) and returns a printable plan; it writes
nothing. `apply_plan` rewrites only the planned lines: each file is re-read and compared
with what was planned against (a file edited in between is left alone), the change is
journaled before and after, and the new content replaces the old by temp file + rename.
Everything else in the file stays byte for byte as it was.

A reference that cannot be resolved (variable, registry unreachable, tag unknown) is a plan
entry with a reason, never a guess.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from shipsure.errors import InvalidDigestError, InvalidReferenceError
from shipsure.fileio import append_json_line, write_atomic
from shipsure.findings import Report
from shipsure.lint.images import ImageUse
from shipsure.lint.rules import location
from shipsure.model import Digest, Reference
from shipsure.registry.interface import NotFoundError, Registry, RegistryError

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


@dataclass
class FixPlan:
    steps: list[FixStep]
    file_hashes: dict[str, str]  # shown path -> sha256 of the content planned against
    disk_paths: dict[str, str]  # shown path -> path on disk

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
        }

    def render_text(self) -> str:
        out = [f"fix plan: {len(self.changes)} change(s), {len(self.unresolved)} not fixable"]
        for s in self.changes:
            out.append(f"  {s.file}:{s.line}  {s.old}  ->  {s.new}")
        for s in self.unresolved:
            out.append(f"  {s.file}:{s.line}  {s.old}  NOT FIXED: {s.reason}")
        return "\n".join(out) + "\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pinned_text(use: ImageUse, ref: Reference, digest: Digest) -> str:
    # Keep the reference as written (short docker.io names stay short); add the tag a bare
    # name implied, then the digest.
    text = use.text if ref.tag is not None else f"{use.text}:latest"
    return f"{text}@{digest}"


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
) -> FixPlan:
    """Plan a pin for every image use that has a PIN001-PIN003 finding in `report` (so a
    disabled rule is never fixed). `open_registry(host)` gives a registry; this function
    closes every one it opened."""
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
                        registries[ref.registry] = open_registry(ref.registry)
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
    hashes: dict[str, str] = {}
    paths: dict[str, str] = {}
    for step in steps:
        if step.file not in hashes:
            path = disk_path(step.file)
            paths[step.file] = str(path)
            hashes[step.file] = _sha256(path.read_bytes())
    return FixPlan(steps, hashes, paths)


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


def apply_plan(plan: FixPlan, journal: Path) -> ApplyResult:
    """Make the planned changes; journal each file before and after its rename."""
    result = ApplyResult([], [])
    by_file: dict[str, list[FixStep]] = {}
    for step in plan.changes:
        by_file.setdefault(step.file, []).append(step)
    for file, changes in by_file.items():
        path = Path(plan.disk_paths[file])
        data = path.read_bytes()
        if _sha256(data) != plan.file_hashes[file]:
            result.skipped += [(s, "file changed since the plan was made") for s in changes]
            continue
        new_data, missed = rewrite(data, changes)
        result.skipped += [(s, "reference not found on its line") for s in missed]
        done = [s for s in changes if s not in missed]
        if not done:
            continue
        record: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "file": file,
            "sha256_before": plan.file_hashes[file],
            "sha256_after": _sha256(new_data),
            "changes": [{"line": s.line, "old": s.old, "new": s.new} for s in done],
        }
        append_json_line(journal, {**record, "state": "applying"})
        write_atomic(path, new_data, mode=path.stat().st_mode & 0o7777)
        append_json_line(journal, {**record, "state": "applied"})
        result.applied += done
    return result
