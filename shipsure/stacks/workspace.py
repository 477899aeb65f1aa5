"""Where a stacks command works: the repository, its configuration and its folders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipsure.fileio import read_regular
from shipsure.stacks import state
from shipsure.stacks.baseline import Baseline, choose_baseline
from shipsure.stacks.changed import ChangedStacks, all_stacks, detect
from shipsure.stacks.config import StacksConfig, load_config
from shipsure.stacks.discovery import find_stacks
from shipsure.stacks.git import FileChange, Git
from shipsure.stacks.links import Links, resolve

MAX_HCL_BYTES = 4 * 1024 * 1024
LOCK_URL_ENV = "SHIPSURE_LOCK_URL"


@dataclass
class Workspace:
    git: Git
    config: StacksConfig
    state_dir: Path

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
        return env.get(LOCK_URL_ENV) or f"file://{self.root / '.shipsure' / 'locks'}"

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
        files, raw = self.git.tracked()
        return files, resolve(raw)

    def all_stacks(self) -> list[str]:
        files, links = self.tracked()
        return find_stacks(links.expand(files), self.config, links)

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
            result = detect(files, changes, self.config, self.read_text, links)
        result.baseline = baseline.to_dict()
        return result
