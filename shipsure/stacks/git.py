"""The few git questions stack detection asks, each one subprocess with a timeout.

Paths cross this module as POSIX strings relative to the repository root, read with `-z`
so unusual file names survive.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shipsure.errors import BadInputError, CouldNotRunError

GIT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class FileChange:
    status: str  # git's letter: A added, M modified, D deleted, T type change; ? untracked
    path: str


class Git:
    def __init__(self, root: Path, timeout: float = GIT_TIMEOUT_SECONDS) -> None:
        self.root = root
        self.timeout = timeout
        self._head: str | None = None

    @classmethod
    def discover(cls, start: Path) -> Git:
        """The repository holding `start`; a bad input error when it is not in one."""
        try:
            start.stat()
        except FileNotFoundError:
            raise BadInputError(f"{start}: no such folder") from None
        except OSError as exc:
            # A name too long, a loop of links, no permission: exists() raises some of them.
            raise BadInputError(f"{start}: {exc.strerror or exc}") from None
        try:
            out = _run(["git", "-C", str(start), "rev-parse", "--show-toplevel"], 30.0)
        except _GitFailed as exc:
            if "not a git repository" in str(exc):
                raise BadInputError(f"{start}: not inside a git repository") from None
            # A repository git refuses to read (owned by another user: safe.directory, a
            # damaged .git): say what git said, not that there is none.
            raise CouldNotRunError(f"{start}: git cannot read the repository: {exc}") from None
        return cls(Path(out.strip()))

    def _git(self, *args: str) -> str:
        try:
            return _run(["git", "-C", str(self.root), *args], self.timeout)
        except _GitFailed as exc:
            raise CouldNotRunError(f"git {args[0]} failed in {self.root}: {exc}") from None

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names, or None when this clone does not have it."""
        if ref.startswith("-"):
            return None
        try:
            cmd = ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]
            out = _run(["git", "-C", str(self.root), *cmd], self.timeout)
        except _GitFailed:
            return None
        return out.strip() or None

    def head(self) -> str:
        if self._head is None:  # asked several times a run; HEAD does not move meanwhile
            self._head = self.resolve("HEAD")
        if self._head is None:
            raise BadInputError(f"{self.root}: the repository has no commits yet")
        return self._head

    def is_shallow(self) -> bool:
        return self._git("rev-parse", "--is-shallow-repository").strip() == "true"

    def merge_base(self, a: str, b: str) -> str | None:
        try:
            out = _run(["git", "-C", str(self.root), "merge-base", a, b], self.timeout)
        except _GitFailed:
            return None
        return out.strip() or None

    def tracked_files(self) -> list[str]:
        return [p for p in self._git("ls-files", "-z").split("\0") if p]

    def symlinks(self) -> dict[str, str]:
        return self.tracked()[1]

    def tracked(self) -> tuple[list[str], dict[str, str]]:
        """Tracked files, and the symbolic links among them (mode 120000) with the target
        each one holds, from one `git ls-files`."""
        files: list[str] = []
        links: dict[str, str] = {}
        for entry in self._git("ls-files", "-s", "-z").split("\0"):
            meta, _, path = entry.partition("\t")
            if not path:
                continue
            if not files or files[-1] != path:  # unmerged paths are listed once a stage
                files.append(path)
            if not meta.startswith("120000 "):
                continue
            try:
                links[path] = os.readlink(self.root / path)
            except OSError:
                # Not checked out as a link (core.symlinks=false): the blob holds the target.
                links[path] = self._git("cat-file", "blob", meta.split()[1]).strip()
        return files, links

    def changes(self, base: str, head: str) -> list[FileChange]:
        """Files that differ between two commits' trees. Renames count as delete + add so
        both the old and the new folder are seen."""
        # A submodule whose commit moved is a change even where `diff.ignoreSubmodules` or
        # `.gitmodules` say `ignore = all` (set to quiet `git status`).
        flags = ("--name-status", "-z", "--no-renames", "--ignore-submodules=none")
        return _name_status(self._git("diff", *flags, base, head, "--"))

    def uncommitted(self) -> list[FileChange]:
        """Tracked files whose work tree or index differs from HEAD (staged or not)."""
        try:
            # A submodule holding only untracked files (its build output) is no change.
            flags = ["--name-status", "-z", "--no-renames", "--ignore-submodules=untracked"]
            diff = ["diff", *flags, "HEAD", "--"]
            out = _run(["git", "-C", str(self.root), *diff], self.timeout)
        except _GitFailed as exc:
            if self.resolve("HEAD") is None:  # no commit yet: everything added is new
                return [FileChange("A", p) for p in self.tracked_files()]
            raise CouldNotRunError(f"git diff failed in {self.root}: {exc}") from None
        return _name_status(out)

    def untracked(self) -> list[str]:
        """Files in the work tree that git neither tracks nor ignores."""
        out = self._git("ls-files", "--others", "--exclude-standard", "-z")
        return [p for p in out.split("\0") if p]


def _name_status(out: str) -> list[FileChange]:
    parts = out.split("\0")
    changes: list[FileChange] = []
    for i in range(0, len(parts) - 1, 2):
        if parts[i]:
            changes.append(FileChange(parts[i][0], parts[i + 1]))
    return changes


class _GitFailed(Exception):
    pass


def _run(cmd: list[str], timeout: float) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise CouldNotRunError("git is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise _GitFailed(f"timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        # git's own verdict is its `fatal:` line; hints may follow it.
        fatal = [line for line in message if line.startswith(("fatal:", "error:"))]
        raise _GitFailed((fatal or message or [f"exit code {proc.returncode}"])[-1])
    return proc.stdout.decode("utf-8", "surrogateescape")
