"""Which commit `stacks changed` compares HEAD with, and why.

In order:

1. `--all`: every stack.
2. `--base REF`: the merge base of REF and HEAD (so a pull request branch is compared with
   where it forked, not with where main has moved since).
3. `--since-last-apply`: the last commit `stacks run apply` applied completely.
4. CI variables:
   * Woodpecker (`CI=woodpecker` or `CI_PIPELINE_EVENT` set): `manual` and `cron` events
     take all stacks; `pull_request` compares with `CI_COMMIT_TARGET_BRANCH` (a clone
     without it uses `CI_PIPELINE_FILES`, the pull request's files); other events
     with `CI_PREV_COMMIT_SHA`; without it, the `CI_PIPELINE_FILES` list (which Woodpecker
     leaves undefined above 500 files, and sets to `[]` whenever it has no list: then all
     stacks).
   * GitHub Actions: `workflow_dispatch`, `schedule` and `repository_dispatch` take all
     stacks; `pull_request*` compares with `GITHUB_BASE_REF`; `push` with the event's
     `before` commit.
5. Outside CI: the last applied commit when one was recorded, else all stacks.

A baseline commit this clone lacks (a shallow clone, a force-push) never silently shrinks
the set: all stacks are taken, with that reason. Pure apart from the git questions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from shipsure.errors import BadInputError
from shipsure.fileio import read_regular
from shipsure.stacks.git import Git

ALL_ZERO = "0" * 40
ALL_EVENTS_WOODPECKER = frozenset({"manual", "cron"})
ALL_EVENTS_GITHUB = frozenset({"workflow_dispatch", "schedule", "repository_dispatch"})
MAX_EVENT_BYTES = 8 * 1024 * 1024
LAST_APPLY = "last successful apply"


@dataclass(frozen=True)
class Baseline:
    """Exactly one of: a commit to diff with, a list of changed files, or all stacks."""

    description: str
    commit: str | None = None
    files: tuple[str, ...] | None = None
    all_reason: str | None = None
    # The last applied commit: HEAD there means everything is applied, not a mistake.
    applied: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "description": self.description,
            "all_reason": self.all_reason,
        }


def everything(reason: str) -> Baseline:
    return Baseline(description=reason, all_reason=reason)


def choose_baseline(
    git: Git,
    env: Mapping[str, str],
    *,
    base: str | None = None,
    since_last_apply: bool = False,
    last_applied: str | None = None,
    take_all: bool = False,
) -> Baseline:
    if take_all:
        return everything("all stacks requested (--all)")
    if base is not None:
        commit = git.resolve(base)
        if commit is None:
            if git.is_shallow():
                return _missing(git, base, "--base")
            raise BadInputError(f"--base {base}: no such commit in {git.root}")
        return _merge_base(git, commit, f"--base {base}")
    if since_last_apply:
        if last_applied is None:
            return everything("no successful apply recorded yet: all stacks")
        return _commit(git, last_applied, LAST_APPLY, applied=True)
    if env.get("CI") == "woodpecker" or "CI_PIPELINE_EVENT" in env:
        return _woodpecker(git, env)
    if env.get("GITHUB_ACTIONS") == "true":
        return _github(git, env)
    if last_applied is not None:
        return _commit(git, last_applied, LAST_APPLY, applied=True)
    return everything("no baseline (not in CI, no --base, no apply recorded): all stacks")


def _commit(git: Git, ref: str, what: str, applied: bool = False) -> Baseline:
    commit = git.resolve(ref)
    if commit is None:
        return _missing(git, ref, what)
    return Baseline(description=f"{what} {commit[:12]}", commit=commit, applied=applied)


def _merge_base(git: Git, commit: str, what: str) -> Baseline:
    fork = git.merge_base(commit, "HEAD")
    if fork is None:  # unrelated histories: compare the trees directly
        return Baseline(description=f"{what} ({commit[:12]})", commit=commit)
    return Baseline(description=f"{what} (merge base {fork[:12]})", commit=fork)


def _missing(git: Git, ref: str, what: str) -> Baseline:
    if git.is_shallow():
        return everything(
            f"{what} {ref} is not in this shallow clone (fetch more history, e.g. "
            "fetch-depth 0); all stacks"
        )
    return everything(f"{what} {ref} is not in this repository; all stacks")


def _woodpecker(git: Git, env: Mapping[str, str]) -> Baseline:
    event = env.get("CI_PIPELINE_EVENT", "")
    if event in ALL_EVENTS_WOODPECKER:
        return everything(f"Woodpecker {event} run (CI_PIPELINE_EVENT={event}): all stacks")
    if event.startswith("pull_request"):
        target = env.get("CI_COMMIT_TARGET_BRANCH", "")
        if target:
            found = _target_branch(git, target, "CI_COMMIT_TARGET_BRANCH")
            # Woodpecker clones a pull request without its target branch; the files the
            # forge lists for the pull request say the same, when Woodpecker passed them.
            if found.all_reason is None or "CI_PIPELINE_FILES" not in env:
                return found
            why = f"CI_COMMIT_TARGET_BRANCH {target} is not in this clone; "
            return _pipeline_files(env["CI_PIPELINE_FILES"], why)
    prev = env.get("CI_PREV_COMMIT_SHA", "")
    if prev and prev != ALL_ZERO:
        commit = git.resolve(prev)
        if commit is not None:
            return Baseline(description=f"CI_PREV_COMMIT_SHA {commit[:12]}", commit=commit)
    files = env.get("CI_PIPELINE_FILES")
    if files is None:
        why = "CI_PREV_COMMIT_SHA missing" if not prev else f"CI_PREV_COMMIT_SHA {prev} not here"
        return everything(
            f"{why} and CI_PIPELINE_FILES undefined (Woodpecker leaves it unset above 500 "
            "files): all stacks"
        )
    return _pipeline_files(files)


def _pipeline_files(files: str, why: str = "") -> Baseline:
    try:
        listed = json.loads(files)
    except ValueError:
        listed = None
    if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
        raise BadInputError("CI_PIPELINE_FILES: expected a JSON list of file paths")
    if not listed:
        # Woodpecker writes `[]` whenever it has no list, also for events it never lists
        # files for (tag, release, deployment): an empty list proves nothing.
        return everything(
            f"{why}CI_PIPELINE_FILES is [], which Woodpecker also sets when it did not list "
            "the files (tag, release and deployment events): all stacks"
        )
    return Baseline(
        description=f"{why}CI_PIPELINE_FILES ({len(listed)} files)", files=tuple(listed)
    )


def _target_branch(git: Git, branch: str, variable: str) -> Baseline:
    for ref in (f"origin/{branch}", f"refs/remotes/origin/{branch}", branch):
        commit = git.resolve(ref)
        if commit is not None:
            return _merge_base(git, commit, f"{variable} {ref}")
    return _missing(git, f"origin/{branch}", variable)


def _github(git: Git, env: Mapping[str, str]) -> Baseline:
    event = env.get("GITHUB_EVENT_NAME", "")
    if event in ALL_EVENTS_GITHUB:
        return everything(f"GitHub {event} run: all stacks")
    if event.startswith("pull_request"):
        target = env.get("GITHUB_BASE_REF", "")
        if target:
            return _target_branch(git, target, "GITHUB_BASE_REF")
    before = _github_before(env.get("GITHUB_EVENT_PATH", ""))
    if before and before != ALL_ZERO:
        return _commit(git, before, "GitHub push 'before'")
    return everything(f"GitHub {event or 'unknown'} event without a previous commit: all stacks")


def _github_before(path: str) -> str | None:
    if not path:
        return None
    try:
        # Only a regular file: GITHUB_EVENT_PATH naming a FIFO must not hang the run.
        payload = json.loads(read_regular(path, MAX_EVENT_BYTES)[:MAX_EVENT_BYTES])
    except (OSError, ValueError):
        return None
    before = payload.get("before") if isinstance(payload, dict) else None
    return before if isinstance(before, str) else None
