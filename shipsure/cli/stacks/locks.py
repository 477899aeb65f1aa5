"""`shipsure stacks locks list|break`: what a lock backend holds; break one with --apply."""

from __future__ import annotations

import argparse
import json
import sys
import time

from shipsure.cli.stacks.common import lock_backend, utc, workspace
from shipsure.findings import ExitCode
from shipsure.stacks import state


def run_locks_list(args: argparse.Namespace) -> int:
    ws = workspace(args)
    backend = lock_backend(ws, args)
    try:
        infos = backend.list()
    finally:
        backend.close()
    now = time.time()
    if args.format == "json":
        body = [
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
        sys.stdout.write(json.dumps({"locks": body}, indent=2) + "\n")
        return int(ExitCode.CLEAN)
    if not infos:
        sys.stdout.write("no locks held\n")
        return int(ExitCode.CLEAN)
    for i in infos:
        left = i.expires_at - now
        when = f"stale for {-left:.0f}s" if left <= 0 else f"expires in {left:.0f}s"
        sys.stdout.write(f"{i.key}  {i.owner}  since {utc(i.acquired_at)}  {when}")
        sys.stdout.write(f"  {i.note}\n" if i.note else "\n")
    return int(ExitCode.CLEAN)


def run_locks_break(args: argparse.Namespace) -> int:
    ws = workspace(args)
    backend = lock_backend(ws, args)
    try:
        info = backend.get(args.key)
        if info is None:
            sys.stdout.write(f"no lock {args.key!r} is held; nothing to break\n")
            return int(ExitCode.CLEAN)
        described = f"lock {info.key!r} held by {info.owner} since {utc(info.acquired_at)}"
        if info.note:
            described += f" ({info.note})"
        if not args.apply:
            sys.stdout.write(f"would break {described}\nrun again with --apply to break it\n")
            return int(ExitCode.CLEAN)
        state.journal(ws.state_dir, f"locks break: {described}")
        broken = backend.force_break(args.key)
    finally:
        backend.close()
    sys.stdout.write(f"{'broke' if broken else 'already gone:'} {described}\n")
    return int(ExitCode.CLEAN)
