"""`shipsure stacks drift`: plan every stack, alert on drift transitions only."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipsure.cli.stacks.common import (
    lock_backend,
    normalize,
    note,
    run_settings,
    warn,
    workspace,
)
from shipsure.findings import ExitCode
from shipsure.stacks import state
from shipsure.stacks.discovery import display

if TYPE_CHECKING:
    from shipsure.stacks import drift
    from shipsure.stacks.runner import StackRun


def run_drift(args: argparse.Namespace) -> int:
    from shipsure.stacks import alerts, drift
    from shipsure.stacks.runner import cancel_on_signals, run_stacks

    ws = workspace(args)
    known = ws.all_stacks()
    warn(ws.not_understood())
    stacks = [normalize(ws, s, set(known)) for s in args.stacks] if args.stacks else known
    webhook = args.webhook or os.environ.get("SHIPSURE_DRIFT_WEBHOOK")
    if webhook:
        alerts.check_url(webhook, "--webhook" if args.webhook else "SHIPSURE_DRIFT_WEBHOOK")
    state_file = args.state_file or ws.state_dir / state.DRIFT_STATE
    stored = state.read_json(state_file)
    previous = drift.previous_statuses(stored)

    backend = lock_backend(ws, args)
    try:
        settings = run_settings(ws, args, "plan", backend, note(ws, "drift"))
        with cancel_on_signals(settings.cancelled) as signals:
            runs = run_stacks(settings, stacks)
    finally:
        backend.close()
    current, transitions = drift.collect(runs, previous)

    alert: dict[str, Any] = {"sent": False}
    failed_alert = ""
    if transitions and webhook:
        kind = alerts.webhook_kind(webhook, args.webhook_kind)
        body = alerts.payload(kind, transitions, ws.root.name)
        try:
            status = alerts.post(webhook, body)
            alert = {"sent": True, "kind": kind, "status": status}
        except alerts.AlertFailed as exc:
            failed_alert = (
                f"drift alert not delivered ({exc}); state not saved, so the next run alerts again"
            )
            alert = {"sent": False, "kind": kind, "error": str(exc)}
    if not failed_alert:
        state.write_json(state_file, drift.next_state(stored, current, time.time(), known))

    _render_drift(args.format, runs, current, previous, transitions, alert, state_file)
    if failed_alert:
        print(f"shipsure: {failed_alert}", file=sys.stderr)
    statuses = set(current.values())
    if signals:
        print(f"shipsure: cancelled by {signal.Signals(signals[0]).name}", file=sys.stderr)
        return 128 + signals[0]
    if drift.DRIFTED in statuses:
        return int(ExitCode.FINDINGS)
    if failed_alert or statuses & {drift.ERROR, drift.SKIPPED}:
        return int(ExitCode.COULD_NOT_RUN)
    return int(ExitCode.CLEAN)


def _render_drift(
    fmt: str,
    runs: Sequence[StackRun],
    current: Mapping[str, str],
    previous: Mapping[str, str],
    transitions: Sequence[drift.Transition],
    alert: Mapping[str, Any],
    state_file: Path,
) -> None:
    from shipsure.stacks import drift

    if fmt == "json":
        body = {
            "stacks": [
                {
                    "path": display(r.path),
                    "status": current[r.path],
                    "previous": previous.get(r.path),
                    "log": r.log,
                    "detail": r.detail,
                }
                for r in runs
            ],
            "transitions": [t.to_dict() for t in transitions],
            "alert": dict(alert),
            "state_file": str(state_file),
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    rows = [("STACK", "STATUS", "PREVIOUS", "LOG")]
    rows += [(display(r.path), current[r.path], previous.get(r.path) or "-", r.log) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(c.ljust(widths[i]) if i < 3 else c for i, c in enumerate(row)) for row in rows
    ]
    for r in runs:
        if current[r.path] in (drift.ERROR, drift.SKIPPED) and r.detail:
            lines.append(f"  {display(r.path)}: {r.detail}")
    for t in transitions:
        lines.append(f"transition: {display(t.path)} {t.before or 'new'} -> {t.after} ({t.kind})")
    if alert.get("sent"):
        lines.append(f"alert sent ({alert['kind']} webhook, HTTP {alert['status']})")
    elif transitions and "error" not in alert:
        lines.append("no webhook configured: transitions not alerted")
    sys.stdout.write("\n".join(lines) + "\n")
