"""`shipsure stacks run plan|apply`: named, changed or all stacks, in parallel under locks."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from shipsure.cli.stacks.common import (
    detect_changes,
    lock_backend,
    normalize,
    note,
    run_settings,
    warn,
    workspace,
)
from shipsure.errors import UsageError
from shipsure.findings import ExitCode
from shipsure.stacks import state
from shipsure.stacks.changed import ChangedStacks
from shipsure.stacks.discovery import display
from shipsure.stacks.workspace import Workspace


def run_run(args: argparse.Namespace) -> int:
    from shipsure.stacks.runner import cancel_on_signals, run_stacks, summary_table

    ws = workspace(args)
    stacks, complete, detection = _select(ws, args)
    head = ws.git.head()
    # Taken before the run: `init` may rewrite a tracked .terraform.lock.hcl.
    dirty = ws.local_summary()
    if args.dry_run:
        return _dry_run(ws, args, stacks, detection)
    backend = lock_backend(ws, args)
    try:
        settings = run_settings(ws, args, args.action, backend, note(ws, f"run {args.action}"))
        with cancel_on_signals(settings.cancelled) as signals:
            runs = run_stacks(settings, stacks) if stacks else []
    finally:
        backend.close()
    ok = all(r.ok for r in runs)
    recorded = False
    if args.action == "apply" and complete and ok:
        if dirty is not None:
            # What was applied is not HEAD: recording HEAD would hide the difference from
            # the next `--since-last-apply` if those edits are never committed.
            warn([f"not recording {head[:12]} as the last applied commit: {dirty}"])
        else:
            state.write_last_applied(ws.state_dir, head)
            recorded = True
    if args.format == "json":
        body = {
            "action": args.action,
            "commit": head,
            "stacks": [r.to_dict() for r in runs],
            "ok": ok,
            "last_applied_recorded": recorded,
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        sys.stdout.write(summary_table(runs) if runs else "no stacks to run\n")
        if recorded:
            sys.stdout.write(f"recorded {head[:12]} as the last applied commit\n")
    if signals:
        # Cancelled by a signal: the summary is printed; exit as a shell reports the signal.
        sys.stderr.write(f"shipsure: cancelled by {signal.Signals(signals[0]).name}\n")
        return 128 + signals[0]
    return int(ExitCode.CLEAN if ok else ExitCode.FINDINGS)


def _dry_run(
    ws: Workspace, args: argparse.Namespace, stacks: list[str], detection: ChangedStacks | None
) -> int:
    from shipsure.stacks.runner import lock_key

    binary = args.binary or ws.config.binary
    parallel = args.parallel or ws.config.parallel
    reasons = {s.path: s.reasons for s in detection.stacks} if detection else {}
    plan = [
        {
            "path": display(s),
            "steps": ["init", args.action],
            "lock": lock_key(ws.config.lock_prefix, s),
            "reasons": reasons.get(s, []),
        }
        for s in stacks
    ]
    if args.format == "json":
        body = {"action": args.action, "binary": binary, "parallel": parallel, "stacks": plan}
        sys.stdout.write(json.dumps({"dry_run": True, **body}, indent=2) + "\n")
        return int(ExitCode.CLEAN)
    lines = [f"would run {binary} {args.action} on {len(stacks)} stack(s), {parallel} at a time:"]
    for item in plan:
        lines.append(f"  {item['path']}: init, {args.action} under lock {item['lock']!r}")
        lines += [f"      {reason}" for reason in item["reasons"]]
    sys.stdout.write("\n".join(lines) + "\n")
    return int(ExitCode.CLEAN)


def _select(
    ws: Workspace, args: argparse.Namespace
) -> tuple[list[str], bool, ChangedStacks | None]:
    """The stacks to run, whether they are the complete changed set, and the detection."""
    known = ws.all_stacks()
    if args.stacks:
        if args.changed or args.all:
            raise UsageError("name stacks or pass --changed/--all, not both")
        chosen = [normalize(ws, s, set(known)) for s in args.stacks]
        return list(dict.fromkeys(chosen)), False, None
    if args.all and not args.changed:
        warn(ws.not_understood())
        return known, True, None
    if not args.changed:
        raise UsageError("name the stacks to run, or pass --changed or --all")
    result = detect_changes(ws, args, os.environ)
    if result.deleted:
        warn(
            f"stack {display(d.path)} was removed since the baseline; its resources are not "
            "destroyed by this run (destroy them from a checkout that still has it)"
            for d in result.deleted
        )
    return result.paths, True, result
