"""Where a stacks command works: the repository, its configuration and its folders."""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipsure.fileio import read_regular
from shipsure.stacks import state
from shipsure.stacks.baseline import Baseline, choose_baseline
from shipsure.stacks.changed import ChangedStacks, all_stacks, detect, not_understood
from shipsure.stacks.config import StacksConfig, load_config
from shipsure.stacks.discovery import find_stacks
from shipsure.stacks.git import FileChange, Git
from shipsure.stacks.links import Links, resolve

MAX_HCL_BYTES = 4 * 1024 * 1024
LOCK_URL_ENV = "SHIPSURE_LOCK_URL"
# What Terraform and Terragrunt write into a stack folder while they run. Left untracked (a
# repository without a .gitignore for them), they are output, not a change someone made.
RUNTIME_FOLDERS = frozenset({".terraform", ".terragrunt-cache", "terraform.tfstate.d"})
RUNTIME_FILES = frozenset(
    {
        "terraform.tfstate",
        "terraform.tfstate.backup",
        ".terraform.tfstate.lock.info",
        ".terraform.lock.hcl",
        "crash.log",
    }
)
MAX_NAMES_SHOWN = 5
# Where `stacks run` keeps locks and the provider plugin cache unless told otherwise.
LOCKS_FOLDER = ".shipsure/locks"
PLUGIN_CACHE_FOLDER = ".shipsure/plugin-cache"


@dataclass
class Workspace:
    git: Git
    config: StacksConfig
    state_dir: Path
    _local: list[FileChange] | None = field(default=None, init=False, repr=False)

    @property
    def root(self) -> Path:
        return self.git.root

    @classmethod
    def open(
        cls, repo: Path, config_file: Path | None = None, state_dir: Path | None = None
    ) -> Workspace:
        git = Git.discover(repo)
        config = load_config(git.root, config_file)
        return cls(git, config, state_dir or git.root / config.state_dir)

    def default_lock_url(self, env: Mapping[str, str]) -> str:
        return env.get(LOCK_URL_ENV) or f"file://{self.root / LOCKS_FOLDER}"

    def lock_key(self, stack: str) -> str:
        return f"{self.config.lock_prefix}{stack or '.'}"

    def read_text(self, path: str) -> str | None:
        """A tracked file's text from the work tree; None if unreadable or huge (a
        generated blob is no module)."""
        try:
            # A tracked link may name a FIFO or a device: never block or read forever.
            raw = read_regular(self.root / path, MAX_HCL_BYTES)
        except OSError:
            return None
        if len(raw) > MAX_HCL_BYTES:
            return None
        return raw.decode("utf-8", "replace")

    def tracked(self) -> tuple[list[str], Links]:
        """The repository's files as the work tree holds them: tracked files, plus files
        not yet added (a new stack is a stack before its first commit, as in Terramate)."""
        files, raw = self.git.tracked()
        local = self.local_changes()
        gone = {c.path for c in local if c.status == "D"}
        if gone:
            files = [f for f in files if f not in gone]
            raw = {link: target for link, target in raw.items() if link not in gone}
        for change in local:
            if change.status != "?":
                continue
            files.append(change.path)
            with contextlib.suppress(OSError):  # not a link
                raw[change.path] = os.readlink(self.root / change.path)
        return files, resolve(raw)

    def local_changes(self) -> list[FileChange]:
        """Uncommitted changes to tracked files and untracked files git does not ignore,
        without what Terraform and shipsure write while running."""
        if self._local is None:
            own = self._own_folders()
            found = [
                *self.git.uncommitted(),
                *(FileChange("?", p) for p in self.git.untracked() if not _runtime(p, own)),
            ]
            self._local = found
        return self._local

    def _own_folders(self) -> tuple[str, ...]:
        """Repository-relative folders where shipsure keeps state, logs, locks and the
        plugin cache by default (not `.shipsure/` itself: a new stacks.yaml is a change)."""
        folders = [LOCKS_FOLDER, PLUGIN_CACHE_FOLDER]
        for folder in (self.state_dir, self.root / self.config.log_dir):
            with contextlib.suppress(ValueError):  # outside the repository
                folders.append(folder.absolute().relative_to(self.root).as_posix())
        return tuple(f"{f}/" for f in folders if f not in ("", "."))

    def local_summary(self) -> str | None:
        """What `local_changes` found, in a few words; None for a clean work tree."""
        local = self.local_changes()
        if not local:
            return None
        shown = ", ".join(c.path for c in local[:MAX_NAMES_SHOWN])
        more = f" and {len(local) - MAX_NAMES_SHOWN} more" if len(local) > MAX_NAMES_SHOWN else ""
        return f"the work tree has {len(local)} uncommitted or untracked file(s) ({shown}{more})"

    def all_stacks(self) -> list[str]:
        files, links = self.tracked()
        return find_stacks(links.expand(files), self.config, links)

    def not_understood(self) -> list[str]:
        """Warnings for stacks defined in ways `all_stacks` cannot list."""
        return not_understood(self.tracked()[0])

    def baseline(
        self,
        env: Mapping[str, str],
        *,
        base: str | None = None,
        since_last_apply: bool = False,
        take_all: bool = False,
    ) -> Baseline:
        return choose_baseline(
            self.git,
            env,
            base=base,
            since_last_apply=since_last_apply,
            last_applied=state.read_last_applied(self.state_dir),
            take_all=take_all,
        )

    def changed(self, baseline: Baseline) -> ChangedStacks:
        files, links = self.tracked()
        if baseline.all_reason is not None:
            result = all_stacks(files, self.config, baseline.all_reason, links)
        else:
            if baseline.files is not None:
                present = set(files)
                changes = [FileChange("M" if f in present else "D", f) for f in baseline.files]
            else:
                assert baseline.commit is not None
                changes = self.git.changes(baseline.commit, "HEAD")
            # What the work tree holds is what Terraform would run: edits not yet committed
            # change stacks too (as in Terramate since v0.11), never a silent 0 changed.
            changes = [*changes, *self.local_changes()]
            result = detect(files, changes, self.config, self.read_text, links)
            local = self.local_summary()
            if local is not None:
                result.warnings.insert(0, f"{local}; they count as changes")
            if baseline.commit == self.git.head() and not baseline.applied:
                # `--base origin/main` run on main itself, or a CI re-run of one commit.
                result.warnings.insert(
                    0,
                    f"the baseline ({baseline.description}) is HEAD itself, so no commit "
                    "can differ from it; on the branch it names, compare with the previous "
                    "commit (--base HEAD^) or the last apply (--since-last-apply)",
                )
        result.baseline = baseline.to_dict()
        return result


def _runtime(path: str, own: tuple[str, ...]) -> bool:
    folders = posixpath.dirname(path).split("/")
    return (
        posixpath.basename(path) in RUNTIME_FILES
        or any(f in RUNTIME_FOLDERS for f in folders)
        or path.startswith(own)
    )
