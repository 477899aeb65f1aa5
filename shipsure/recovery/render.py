"""Text for restore plans and their outcomes (pure: plan in, string out)."""

from __future__ import annotations

from collections.abc import Sequence

from shipsure.recovery.apply import Outcome
from shipsure.recovery.plan import PUT_TAG, RestorePlan, Step
from shipsure.report.terminal import printable

STALE_ADVICE = (
    "the registry answers HEAD 200 for blob data it cannot serve: its blob-descriptor "
    "cache outlived the data. With storage.cache.blobdescriptor: inmemory, restart the "
    "registry; with redis, delete the keys blobs::<digest> and "
    "repository::<repository>::blobs::<digest> (or FLUSHDB the cache's database). "
    "Uploading the blob again (this plan) also replaces the entry."
)


KEPT_ADVICE = (
    "distribution never overwrites a data file that exists, so a re-push cannot replace "
    "corrupted content: remove docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data for "
    "each digest above from the registry's storage (restart it if it caches blob "
    "descriptors), then run the same restore again."
)


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n:,} B"


def _step_line(step: Step) -> str:
    what = f"{step.repository}:{step.reference}" if step.op == PUT_TAG else step.repository
    target = f"-> {step.digest}" if step.op == PUT_TAG else step.digest
    why = f"  ({step.reason})" if step.reason else ""
    return f"  {step.op:<13} {what}  {target}  {_size(step.size)}  from {step.source}{why}"


def _rebuild_header(plan: RestorePlan) -> str:
    """Says "no source holds" only of what every source was asked for: the rest names the
    sources that could not be checked, as its items do."""
    n = len(plan.lost)
    unsure = [item for item in plan.lost if item.sources_not_checked]
    if not unsure:
        return f"rebuild (no source holds a verified copy; {n} objects):"
    names = ", ".join(sorted({s for item in unsure for s in item.sources_not_checked}))
    held = n - len(unsure)
    parts = [f"{n} objects"]
    if held:
        parts.append(f"no source holds a verified copy of {held}")
    parts.append(f"{len(unsure)} not found in the sources checked")
    parts.append(f"{names} could not be checked, see notes")
    return f"rebuild ({'; '.join(parts)}):"


def render_plan(plan: RestorePlan, checked: str, *, applying: bool = False) -> str:
    lines = [f"restore {plan.target} from {', '.join(plan.sources)} ({checked})"]
    if plan.steps:
        lines.append(f"plan ({len(plan.steps)} steps, {plan.bytes_to_move:,} bytes to move):")
        lines += [_step_line(s) for s in plan.steps]
        if not applying:
            lines.append("Run again with --apply to push (journaled; safe to re-run).")
    elif not plan.lost and not plan.check_errors:
        lines.append("nothing to restore: every reference checked is intact")
    if plan.lost:
        lines.append(_rebuild_header(plan))
        for item in plan.lost:
            lines.append(
                f"  {item.repository}@{item.digest or '?'}  {item.role}  {_size(item.size)}: "
                f"{item.reason}"
            )
            for reference, digest in sorted(item.tags.items()):
                lines.append(f"      breaks {reference} (was {digest})")
            if item.platforms:
                lines.append(f"      platforms: {', '.join(sorted(item.platforms))}")
            if item.shared_with:
                lines.append(f"      also used by: {', '.join(sorted(item.shared_with))}")
            lines += [f"      rejected copy: {r}" for r in item.rejected]
    if plan.blocked:
        lines.append("held back (they reference content to rebuild first):")
        lines += [f"  {text}" for text in plan.blocked]
    if plan.stale:
        lines.append("stale caches:")
        for stale in plan.stale:
            got = "404" if stale.read_size is None else f"{stale.read_size} bytes"
            lines.append(
                f"  {stale.repository}@{stale.digest}: HEAD 200 ({_size(stale.head_size)}), "
                f"GET gave {got}"
            )
        lines.append(f"  {STALE_ADVICE}")
    if plan.check_errors:
        lines.append("could not check (nothing planned for these):")
        lines += [f"  {text}" for text in plan.check_errors]
    if plan.not_replaced:
        lines.append("not replaced (the registry kept its corrupted data file):")
        lines += [f"  {label}" for label in plan.not_replaced]
        lines.append(f"  {KEPT_ADVICE}")
    if plan.notes:
        lines.append("notes:")
        lines += [f"  {text}" for text in plan.notes]
    # Every line holds registry, repository or file names: escaped for a terminal.
    return "".join(printable(line) + "\n" for line in lines)


def render_outcomes(outcomes: Sequence[Outcome], journal: str) -> str:
    moved = sum(o.bytes_moved for o in outcomes)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
    lines = [f"applied: {summary}; {moved:,} bytes pushed (journal: {journal})"]
    for outcome in outcomes:
        if outcome.result in ("failed", "skipped"):
            step = outcome.step
            lines.append(
                f"  {outcome.result}: {step.op} {step.repository}@{step.digest}: {outcome.reason}"
            )
    return "".join(printable(line) + "\n" for line in lines)
