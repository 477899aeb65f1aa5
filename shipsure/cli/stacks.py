"""`shipsure stacks`: changed-stack detection, a parallel runner under locks, drift, locks.

Sub-commands: `changed`, `run plan|apply`, `drift`, `locks list|break`. Configuration is
described in `shipsure.stacks.config` (and in `shipsure stacks --help`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipsure.errors import BadInputError, UsageError
from shipsure.findings import ExitCode
from shipsure.stacks import state
from shipsure.stacks.changed import ChangedStacks
from shipsure.stacks.config import positive_int
from shipsure.stacks.discovery import display
from shipsure.stacks.locks.interface import DEFAULT_TTL_SECONDS
from shipsure.stacks.workspace import LOCK_URL_ENV, Workspace

# The runner, lock backends and the webhook client load only for the commands that use
# them: `stacks changed` is on every pipeline's critical path and starts faster without.
if TYPE_CHECKING:
    from shipsure.stacks import drift
    from shipsure.stacks.locks import LockBackend
    from shipsure.stacks.runner import RunSettings, StackRun

DESCRIPTION = """\
Run a repository of Terraform/Terragrunt stacks safely: find the stacks a change touches
(through local modules, watched files and global files), run plan/apply on them in
parallel under per-stack locks with a TTL, and watch for drift with alerts on transitions.

A stack is a folder holding *.tf or terragrunt.hcl (not modules/**, not the root).
Settings live in .shipsure/stacks.yaml (or under `stacks:` in shipsure.yaml):
  markers, exclude, root_is_stack, globals, parent_files, watch, binary, parallel,
  step_timeout, state_dir, log_dir, lock_prefix
See the `shipsure.stacks.config` module docstring for the defaults."""

EPILOG = """\
examples:
  shipsure stacks changed --base origin/main
  shipsure stacks changed --since-last-apply --format json
  shipsure stacks run plan --changed --parallel 4
  shipsure stacks run apply live/prod/network --lock-url redis://locks:6379/0
  shipsure stacks drift --webhook https://hooks.slack.com/services/T/B/X
  shipsure stacks locks list
  shipsure stacks locks break live/prod/network --apply"""

CHANGED_EPILOG = """\
baselines, in order: --all; --base REF (merge base with HEAD); --since-last-apply;
Woodpecker (manual/cron: all; pull_request: CI_COMMIT_TARGET_BRANCH; else
CI_PREV_COMMIT_SHA, then CI_PIPELINE_FILES); GitHub Actions (dispatch/schedule: all;
pull_request: GITHUB_BASE_REF; push: the event's `before`); outside CI the last applied
commit, else all stacks. A baseline missing from a shallow clone means all stacks.

examples:
  shipsure stacks changed --base origin/main
  shipsure stacks changed --format paths | xargs -n1 echo
  shipsure stacks changed --format json   # {"stacks": [{"path", "reasons"}], "all": ...}"""

RUN_EPILOG = """\
Each stack: take its lock (before init; renewed while running; released after, also on
errors and Ctrl-C), init (one at a time: the plugin cache is shared), then plan/apply,
up to --parallel at a time. Logs: <log dir>/<stack with / as __>.log. After an apply of
--changed or --all stacks that all succeeded, HEAD is recorded as the last applied commit
(<state dir>/last-applied), the baseline of `stacks changed --since-last-apply`.

exit codes: 0 every stack succeeded; 1 a stack failed or was locked; 2 bad input;
3 could not run (binary or lock backend unavailable); 130 interrupted.

examples:
  shipsure stacks run plan --changed --base origin/main --parallel 4
  shipsure stacks run apply --changed --since-last-apply
  shipsure stacks run apply live/prod/app --lock-wait 600 --dry-run"""

DRIFT_EPILOG = """\
Runs `plan -detailed-exitcode` on every stack (or those named): 0 clean, 2 drifted,
otherwise error. Stacks whose lock is held are skipped and keep their stored status.
Statuses are kept in <state dir>/drift.json; a webhook is called only when a status
changes (newly drifted, resolved, error). If the alert cannot be delivered the state is
not saved, so the next run alerts again.

exit codes: 0 no drift; 1 a stack drifted; 3 otherwise, when a stack could not be checked
(error, skipped) or the alert could not be delivered.

examples:
  shipsure stacks drift --webhook https://hooks.slack.com/services/T/B/X
  shipsure stacks drift live/prod/app --format json --webhook https://hooks.example/drift"""

LOCKS_EPILOG = """\
examples:
  shipsure stacks locks list --lock-url etcd://etcd:2379
  shipsure stacks locks break live/prod/app            # prints what it would do
  shipsure stacks locks break live/prod/app --apply    # breaks it, journaled"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stacks",
        help="changed stacks, parallel plan/apply under locks, drift alerts",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="stacks_command", metavar="SUBCOMMAND")
    sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--repo", type=Path, default=Path("."), help="repository (default: current folder)"
    )
    common.add_argument("--config", type=Path, help="stacks configuration file")
    common.add_argument("--state-dir", type=Path, help="state folder (default: .shipsure/state)")

    locks = argparse.ArgumentParser(add_help=False)
    locks.add_argument(
        "--lock-url",
        help=f"lock backend: file:///dir, redis://, etcd://, postgresql://, vault:// "
        f"(env {LOCK_URL_ENV}; default file://<repo>/.shipsure/locks)",
    )
    locks.add_argument(
        "--lock-ttl",
        type=_seconds,
        default=DEFAULT_TTL_SECONDS,
        metavar="SECONDS",
        help="lock TTL; renewed every TTL/3 while a stack runs (default: 1800)",
    )

    baseline = argparse.ArgumentParser(add_help=False)
    baseline.add_argument("--base", metavar="REF", help="compare HEAD with this commit/branch")
    baseline.add_argument(
        "--since-last-apply",
        action="store_true",
        help="compare with the last commit `stacks run apply` applied completely",
    )
    baseline.add_argument("--all", action="store_true", help="take every stack")

    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--parallel", type=_positive, metavar="N", help="stacks at a time")
    running.add_argument("--binary", help="terraform, tofu, terragrunt or a path")
    running.add_argument("--log-dir", type=Path, help="log folder (default: .shipsure/logs)")
    running.add_argument(
        "--plugin-cache",
        type=Path,
        help="TF_PLUGIN_CACHE_DIR shared by all stacks (default: env, else .shipsure/plugin-cache)",
    )

    changed = sub.add_parser(
        "changed",
        parents=[common, baseline],
        help="list the stacks a change touches, with reasons",
        description="List the stacks changed since a baseline, each with its reasons.",
        epilog=CHANGED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    changed.add_argument("--format", choices=["text", "json", "paths"], default="text")
    changed.set_defaults(run=run_changed)

    run = sub.add_parser(
        "run",
        parents=[common, baseline, running, locks],
        help="plan or apply stacks in parallel under per-stack locks",
        description="Run plan or apply on the named stacks, or on the changed ones.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("action", choices=["plan", "apply"])
    run.add_argument("stacks", nargs="*", metavar="STACK", help="stack folders (repo-relative)")
    run.add_argument("--changed", action="store_true", help="run the changed stacks")
    run.add_argument(
        "--lock-wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a held stack lock (default: 0, report it as locked)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the work, run nothing")
    run.add_argument("--format", choices=["text", "json"], default="text")
    run.set_defaults(run=run_run)

    drift_parser = sub.add_parser(
        "drift",
        parents=[common, running, locks],
        help="plan every stack, alert on drift transitions",
        description="Detect drift with plan -detailed-exitcode; alert on transitions only.",
        epilog=DRIFT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift_parser.add_argument("stacks", nargs="*", metavar="STACK", help="default: all stacks")
    drift_parser.add_argument(
        "--webhook", help="Slack incoming webhook or any URL (env SHIPSURE_DRIFT_WEBHOOK)"
    )
    drift_parser.add_argument(
        "--webhook-kind",
        choices=["auto", "slack", "generic"],
        default="auto",
        help="payload: Slack {text} or the transitions as JSON (auto: Slack for hooks.slack.com)",
    )
    drift_parser.add_argument("--state-file", type=Path, help="default: <state dir>/drift.json")
    drift_parser.add_argument("--format", choices=["text", "json"], default="text")
    drift_parser.set_defaults(run=run_drift)

    locks_parser = sub.add_parser(
        "locks",
        help="list or break stack locks",
        description="List the stack locks a backend holds, or break one.",
        epilog=LOCKS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    locks_sub = locks_parser.add_subparsers(dest="locks_command", metavar="ACTION")
    locks_sub.required = True
    list_parser = locks_sub.add_parser(
        "list", parents=[common, locks], help="every lock, its holder and expiry"
    )
    list_parser.add_argument("--format", choices=["text", "json"], default="text")
    list_parser.set_defaults(run=run_locks_list)
    break_parser = locks_sub.add_parser(
        "break",
        parents=[common, locks],
        help="remove a lock whatever its holder (with --apply)",
        epilog=LOCKS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    break_parser.add_argument("key", help="the lock key, as `locks list` shows it")
    break_parser.add_argument("--apply", action="store_true", help="really break it")
    break_parser.set_defaults(run=run_locks_break)


def _positive(text: str) -> int:
    try:
        return positive_int(int(text), "value")
    except (ValueError, BadInputError):
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, not {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.open(args.repo, args.config, args.state_dir)


def _warn(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"shipsure: warning: {line}", file=sys.stderr)


def _changed(ws: Workspace, args: argparse.Namespace, env: Mapping[str, str]) -> ChangedStacks:
    base = ws.baseline(
        env, base=args.base, since_last_apply=args.since_last_apply, take_all=args.all
    )
    result = ws.changed(base)
    _warn(result.warnings)
    return result


# ---- changed -------------------------------------------------------------------------


def run_changed(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    result = _changed(ws, args, os.environ)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    elif args.format == "paths":
        sys.stdout.write("".join(f"{display(p)}\n" for p in result.paths))
    else:
        sys.stdout.write(render_changed(result))
    return int(ExitCode.CLEAN)


def render_changed(result: ChangedStacks) -> str:
    lines: list[str] = []
    for stack in result.stacks:
        lines.append(display(stack.path))
        lines += [f"  - {reason}" for reason in stack.reasons]
    for stack in result.deleted:
        lines.append(f"{display(stack.path)} (deleted)")
        lines += [f"  - {reason}" for reason in stack.reasons]
    scope = "all stacks" if result.all else f"{len(result.stacks)} stack(s)"
    lines.append(f"{scope} changed; baseline: {result.baseline.get('description', '?')}")
    return "\n".join(lines) + "\n"


# ---- run -----------------------------------------------------------------------------


def _select(
    ws: Workspace, args: argparse.Namespace
) -> tuple[list[str], bool, ChangedStacks | None]:
    """The stacks to run, whether they are the complete changed set, and the detection."""
    known = ws.all_stacks()
    if args.stacks:
        if args.changed or args.all:
            raise UsageError("name stacks or pass --changed/--all, not both")
        chosen = [_normalize(ws, s, set(known)) for s in args.stacks]
        return list(dict.fromkeys(chosen)), False, None
    if args.all and not args.changed:
        return known, True, None
    if not args.changed:
        raise UsageError("name the stacks to run, or pass --changed or --all")
    result = _changed(ws, args, os.environ)
    if result.deleted:
        _warn(
            f"stack {display(d.path)} was removed since the baseline; its resources are not "
            "destroyed by this run (destroy them from a checkout that still has it)"
            for d in result.deleted
        )
    return result.paths, True, result


def _normalize(ws: Workspace, text: str, known: set[str]) -> str:
    path = Path(text)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(ws.root.resolve())
        except ValueError:
            raise BadInputError(f"stack {text}: not inside {ws.root}") from None
    stack = path.as_posix().strip("/")
    stack = "" if stack == "." else stack.removeprefix("./")
    if stack not in known:
        raise BadInputError(f"stack {text}: not a stack folder of {ws.root}")
    return stack


def _settings(
    ws: Workspace, args: argparse.Namespace, action: str, backend: LockBackend, note: str
) -> RunSettings:
    from shipsure.stacks.locks import default_owner
    from shipsure.stacks.runner import RunSettings
    from shipsure.stacks.terraform import locate_binary

    env = os.environ
    cache = args.plugin_cache or (
        Path(env["TF_PLUGIN_CACHE_DIR"])
        if env.get("TF_PLUGIN_CACHE_DIR")
        else ws.root / ".shipsure" / "plugin-cache"
    )
    return RunSettings(
        repo_root=ws.root,
        action=action,
        binary=locate_binary(args.binary or ws.config.binary),
        parallel=args.parallel or ws.config.parallel,
        backend=backend,
        lock_ttl=args.lock_ttl,
        lock_wait=getattr(args, "lock_wait", 0.0),
        log_dir=args.log_dir or ws.root / ws.config.log_dir,
        plugin_cache=cache.absolute(),
        step_timeout=ws.config.step_timeout,
        env=env,
        owner=default_owner(),
        note=note,
        lock_prefix=ws.config.lock_prefix,
    )


def _note(ws: Workspace, what: str) -> str:
    parts = [f"shipsure stacks {what} at {ws.git.head()[:12]}"]
    env = os.environ
    if env.get("CI_PIPELINE_URL"):
        parts.append(env["CI_PIPELINE_URL"])
    elif env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        parts.append(f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}")
    return "; ".join(parts)


def _lock_backend(ws: Workspace, args: argparse.Namespace) -> LockBackend:
    from shipsure.stacks.locks import open_backend

    return open_backend(args.lock_url or ws.default_lock_url(os.environ))


def run_run(args: argparse.Namespace) -> int:
    from shipsure.stacks.runner import run_stacks, summary_table

    ws = _workspace(args)
    stacks, complete, detection = _select(ws, args)
    head = ws.git.head()
    if args.dry_run:
        return _dry_run(ws, args, stacks, detection)
    backend = _lock_backend(ws, args)
    try:
        settings = _settings(ws, args, args.action, backend, _note(ws, f"run {args.action}"))
        runs = run_stacks(settings, stacks) if stacks else []
    finally:
        backend.close()
    ok = all(r.ok for r in runs)
    recorded = False
    if args.action == "apply" and complete and ok:
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


# ---- drift ---------------------------------------------------------------------------


def run_drift(args: argparse.Namespace) -> int:
    from shipsure.stacks import alerts, drift
    from shipsure.stacks.runner import run_stacks

    ws = _workspace(args)
    known = ws.all_stacks()
    stacks = [_normalize(ws, s, set(known)) for s in args.stacks] if args.stacks else known
    webhook = args.webhook or os.environ.get("SHIPSURE_DRIFT_WEBHOOK")
    state_file = args.state_file or ws.state_dir / state.DRIFT_STATE
    stored = state.read_json(state_file)
    previous = drift.previous_statuses(stored)

    backend = _lock_backend(ws, args)
    try:
        settings = _settings(ws, args, "plan", backend, _note(ws, "drift"))
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


# ---- locks ---------------------------------------------------------------------------


def run_locks_list(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    backend = _lock_backend(ws, args)
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
        sys.stdout.write(f"{i.key}  {i.owner}  since {_utc(i.acquired_at)}  {when}")
        sys.stdout.write(f"  {i.note}\n" if i.note else "\n")
    return int(ExitCode.CLEAN)


def run_locks_break(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    backend = _lock_backend(ws, args)
    try:
        info = backend.get(args.key)
        if info is None:
            sys.stdout.write(f"no lock {args.key!r} is held; nothing to break\n")
            return int(ExitCode.CLEAN)
        described = f"lock {info.key!r} held by {info.owner} since {_utc(info.acquired_at)}"
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


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
