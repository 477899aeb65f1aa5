"""What the `stacks` sub-commands share: the workspace, change detection, the lock backend
and the runner's settings from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from shipsure.errors import BadInputError
from shipsure.stacks.changed import ChangedStacks
from shipsure.stacks.workspace import PLUGIN_CACHE_FOLDER, Workspace

# The runner and lock backends load only for the commands that use them: `stacks changed`
# is on every pipeline's critical path and starts faster without.
if TYPE_CHECKING:
    from shipsure.stacks.locks import LockBackend
    from shipsure.stacks.runner import RunSettings


def workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.open(args.repo, args.config, args.state_dir)


def warn(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"shipsure: warning: {line}", file=sys.stderr)


def detect_changes(
    ws: Workspace, args: argparse.Namespace, env: Mapping[str, str]
) -> ChangedStacks:
    base = ws.baseline(
        env, base=args.base, since_last_apply=args.since_last_apply, take_all=args.all
    )
    result = ws.changed(base)
    warn(result.warnings)
    return result


def normalize(ws: Workspace, text: str, known: set[str]) -> str:
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


def run_settings(
    ws: Workspace, args: argparse.Namespace, action: str, backend: LockBackend, note: str
) -> RunSettings:
    from shipsure.stacks.locks import default_owner
    from shipsure.stacks.runner import RunSettings
    from shipsure.stacks.terraform import locate_binary

    env = os.environ
    cache = args.plugin_cache or (
        Path(env["TF_PLUGIN_CACHE_DIR"])
        if env.get("TF_PLUGIN_CACHE_DIR")
        else ws.root / PLUGIN_CACHE_FOLDER
    )
    return RunSettings(
        repo_root=ws.root,
        action=action,
        binary=locate_binary(args.binary or ws.config.binary),
        parallel=args.parallel or ws.config.parallel,
        backend=backend,
        lock_ttl=args.lock_ttl,
        lock_wait=getattr(args, "lock_wait", 0.0),
        log_dir=folder(args.log_dir or ws.root / ws.config.log_dir, "log folder"),
        plugin_cache=folder(cache.absolute(), "plugin cache"),
        step_timeout=ws.config.step_timeout,
        env=env,
        owner=default_owner(),
        note=note,
        lock_prefix=ws.config.lock_prefix,
    )


def folder(path: Path, what: str) -> Path:
    """`path`, created if missing: one line naming it when it cannot be (a file in the way,
    no permission), before any stack starts, never blamed on a stack's log."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"{what} {path}: cannot create it: {exc.strerror or exc}") from None
    return path


def note(ws: Workspace, what: str) -> str:
    parts = [f"shipsure stacks {what} at {ws.git.head()[:12]}"]
    env = os.environ
    if env.get("CI_PIPELINE_URL"):
        parts.append(env["CI_PIPELINE_URL"])
    elif env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        parts.append(f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}")
    return "; ".join(parts)


def lock_backend(ws: Workspace, args: argparse.Namespace) -> LockBackend:
    from shipsure.stacks.locks import open_backend

    return open_backend(args.lock_url or ws.default_lock_url(os.environ))


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
