"""`shipsure stacks locks list|break`: what a lock backend holds; break one with --apply."""

from __future__ import annotations

import argparse
import json
import sys
import time

from shipsure.cli.stacks.common import lock_backend, utc, workspace
from shipsure.findings import ExitCode
from shipsure.plan import Journal, Result, apply
from shipsure.report.terminal import printable
from shipsure.stacks.locks.breaking import BreakWriter, plan_break
from shipsure.stacks.locks.interface import LockInfo, LockUnreadable

JOURNAL_NAME = "journal.jsonl"  # in the stacks state folder (--state-dir)


def run_locks_list(args: argparse.Namespace) -> int:
    ws = workspace(args)
    backend = lock_backend(ws, args)
    try:
        entries = backend.list()
    finally:
        backend.close()
    infos = [e for e in entries if isinstance(e, LockInfo)]
    # A key holding no lock record is shown with the others, and makes the exit code 3:
    # nobody can tell whether its stack is locked.
    unreadable = [e for e in entries if isinstance(e, LockUnreadable)]
    code = ExitCode.COULD_NOT_RUN if unreadable else ExitCode.CLEAN
    now = time.time()
    if args.format == "json":
        body: list[dict[str, object]] = [
            {
                "key": i.key,
                "owner": i.owner,
                "acquired_at": i.acquired_at,
                "expires_at": i.expires_at,
                "stale": i.is_stale(now),
                "note": i.note,
            }
            for i in infos
        ]
        body += [{"key": u.key, "unreadable": str(u)} for u in unreadable]
        sys.stdout.write(json.dumps({"locks": body}, indent=2) + "\n")
        return int(code)
    if not entries:
        sys.stdout.write("no locks held\n")
        return int(code)
    for i in infos:
        left = i.expires_at - now
        when = f"stale for {-left:.0f}s" if left <= 0 else f"expires in {left:.0f}s"
        # Owners and notes come from whoever wrote the lock: escaped for the terminal.
        line = f"{i.key}  {i.owner}  since {utc(i.acquired_at)}  {when}"
        sys.stdout.write(printable(line))
        sys.stdout.write(f"  {printable(i.note)}\n" if i.note else "\n")
    for u in unreadable:
        sys.stdout.write(printable(f"{u.key}  unreadable: {u}") + "\n")
    return int(code)


def run_locks_break(args: argparse.Namespace) -> int:
    ws = workspace(args)
    backend = lock_backend(ws, args)
    try:
        try:
            held: LockInfo | LockUnreadable | None = backend.get(args.key)
        except LockUnreadable as exc:
            held = exc
        plan = plan_break(args.key, held)
        if not args.apply:
            for action in plan.actions:
                sys.stdout.write(f"would break {printable(action.because)}\n")
                sys.stdout.write("run again with --apply to break it\n")
            for line in plan.notes:
                sys.stdout.write(f"{printable(line)}\n")
            return int(ExitCode.CLEAN)
        # Applied even when empty: it settles a break an interrupted run left open.
        journal = Journal(ws.state_dir / JOURNAL_NAME)
        outcomes = apply(plan, BreakWriter(backend), journal)
    finally:
        backend.close()
    for line in plan.notes:
        sys.stdout.write(f"{printable(line)}\n")
    code = ExitCode.CLEAN
    for o in outcomes:
        earlier = " (an interrupted earlier run)" if o.recovered else ""
        match o.result:
            case Result.DONE:
                sys.stdout.write(f"broke {printable(o.action.because)}\n")
            case Result.ALREADY_DONE:
                sys.stdout.write(f"already gone: {printable(o.action.because)}{earlier}\n")
            case _:
                why = printable(f"{o.action.because}: {o.reason}")
                sys.stdout.write(f"not broken: {why}{earlier}\n")
                code = ExitCode.COULD_NOT_RUN
    return int(code)
