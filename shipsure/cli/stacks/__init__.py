"""`shipsure stacks`: changed-stack detection, a parallel runner under locks, drift, locks.

Sub-commands: `changed`, `run plan|apply`, `drift`, `locks list|break`. Configuration is
described in `shipsure.stacks.config` (and in `shipsure stacks --help`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipsure.cli.stacks.changed import run_changed
from shipsure.cli.stacks.drift import run_drift
from shipsure.cli.stacks.locks import run_locks_break, run_locks_list
from shipsure.cli.stacks.run import run_run
from shipsure.errors import BadInputError
from shipsure.stacks import config as stacks_config
from shipsure.stacks.config import positive_int
from shipsure.stacks.locks.interface import DEFAULT_TTL_SECONDS
from shipsure.stacks.workspace import LOCK_URL_ENV

DESCRIPTION = """\
Run a repository of Terraform/Terragrunt stacks safely: find the stacks a change touches
(through local modules, Terragrunt includes and dependencies, symbolic links, watched files
and global files), run plan/apply on them in parallel under per-stack locks with a TTL, and
watch for drift with alerts on transitions.

A stack is a folder holding *.tf, *.tf.json, *.tofu or terragrunt.hcl (not modules/**, not
the root).
Settings live in .shipsure/stacks.yaml (or under `stacks:` in shipsure.yaml); every key is
optional, and these are the defaults (`watch` is empty unless set: its entry is an example):
"""


def _settings() -> str:
    """The defaults block of `shipsure.stacks.config`'s docstring: one place says them."""
    doc = stacks_config.__doc__ or ""
    block = doc.split("::\n\n", 1)[-1].split("\nPatterns", 1)[0]
    return block.rstrip() + "\n"


EPILOG = """\
examples:
  shipsure stacks changed --base origin/main
  shipsure stacks changed --since-last-apply --format json
  shipsure stacks run plan --changed --parallel 4
  shipsure stacks run apply live/prod/network --lock-url redis://locks:6379/0
  shipsure stacks drift --webhook https://hooks.slack.com/services/T/B/X
  shipsure stacks locks list
  shipsure stacks locks break live/prod/network --apply

exit codes: 0 ok; 1 a stack failed, was locked or drifted; 2 bad input; 3 could not run
or check (binary or lock backend unavailable); 128 + the signal when cancelled. Each
SUBCOMMAND's --help says which it gives."""

CHANGED_EPILOG = """\
baselines, in order: --all; --base REF (merge base with HEAD); --since-last-apply;
Woodpecker (manual/cron: all; pull_request: CI_COMMIT_TARGET_BRANCH; else
CI_PREV_COMMIT_SHA, then CI_PIPELINE_FILES); GitHub Actions (dispatch/schedule: all;
pull_request: GITHUB_BASE_REF; push: the event's `before`); outside CI the last applied
commit, else all stacks. A baseline missing from a shallow clone means all stacks.

exit codes: 0 listed (also when none changed); 2 bad input (not a git repository, a
baseline that is no commit, a bad configuration).

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
3 could not run (binary or lock backend unavailable); 128 + the signal when cancelled
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

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
(error, skipped) or the alert could not be delivered; 128 + the signal when cancelled
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

examples:
  shipsure stacks drift --webhook https://hooks.slack.com/services/T/B/X
  shipsure stacks drift live/prod/app --format json --webhook https://hooks.example/drift"""

LOCKS_EPILOG = """\
exit codes: 0 listed, planned or broken (also when no lock is held); 2 bad input (an
unknown lock URL scheme); 3 the lock backend could not be read, a key holds no lock record
(listed with the `locks break` that removes it), or the break failed.

examples:
  shipsure stacks locks list --lock-url etcd://etcd:2379
  shipsure stacks locks break live/prod/app            # prints what it would do
  shipsure stacks locks break live/prod/app --apply    # breaks it, journaled"""


class _TrailingStacks(argparse.ArgumentParser):
    """Stacks named anywhere on the line. argparse (before 3.12) fills `STACK...`
    (nargs='*') with nothing as soon as it meets the action word, so `run plan --parallel 2
    live/a` or `drift --format json live/a` failed with "unrecognized arguments: live/a".
    Left-over words that are not options are taken as stacks, in order."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if isinstance(getattr(parsed, "stacks", None), list):
            words = [e for e in extras if not e.startswith("-")]
            parsed.stacks += words
            extras = [e for e in extras if e.startswith("-")]
        return parsed, extras


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stacks",
        help="changed stacks, parallel plan/apply under locks, drift alerts",
        description=DESCRIPTION + _settings(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="stacks_command",
        metavar="SUBCOMMAND",
        parser_class=type("StacksParser", (_TrailingStacks, type(parser)), {}),
    )
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
        type=_lock_ttl,
        default=DEFAULT_TTL_SECONDS,
        metavar="SECONDS",
        help=f"lock TTL, at least {MIN_LOCK_TTL_SECONDS:g}; renewed every TTL/3 while a stack "
        "runs (default: 1800)",
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
        "list",
        parents=[common, locks],
        help="every lock, its holder and expiry",
        description="List every stack lock the backend holds: key, holder, since, expiry.",
        epilog=LOCKS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    list_parser.add_argument("--format", choices=["text", "json"], default="text")
    list_parser.set_defaults(run=run_locks_list)
    break_parser = locks_sub.add_parser(
        "break",
        parents=[common, locks],
        help="remove a lock whatever its holder (with --apply)",
        description="Print what breaking a stack lock would do; with --apply, break it, "
        "journaled in the state folder (journal.jsonl).",
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


# A TTL of 0 renewed in a busy loop and was stale the moment it was written, so a second
# runner took the lock over at once. Below a few of the holder's 2 s checks, one slow
# renewal loses the lock.
MIN_LOCK_TTL_SECONDS = 10.0


def _lock_ttl(text: str) -> float:
    value = _seconds(text)
    if value < MIN_LOCK_TTL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected at least {MIN_LOCK_TTL_SECONDS:g} seconds, not {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value
