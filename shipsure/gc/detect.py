"""Which distribution version collects this storage, and is a registry serving it right now.

Version, in this order: `--registry-version`; else `--registry-binary PATH` asked for its
`--version`; else the binary of a registry process on this machine serving the same storage
root (`/proc/<pid>/exe --version`). Storage itself does not say which version wrote it, so
without one of these gc-check asks for the flag.

A registry serving the root is found through `/proc`: every process whose executable is
named `registry` or `docker-registry` and runs `serve CONFIG`. Its config is read (through
`/proc/<pid>/root`, so a container's files are found too) with `REGISTRY_*` environment
overrides; its storage root is compared with ours by device and inode. When the root or the
read-only setting cannot be read, the process counts as serving the root read-write: `gc
--apply` refuses unless `--force`.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

import yaml

from shipsure.errors import UsageError

_VERSION_RE = re.compile(r"\sv?(\d+)\.(\d+)\.(\d+)")
_NAMES = frozenset({"registry", "docker-registry"})
VERSION_TIMEOUT_SECONDS = 10.0
VERSION_OUTPUT_LIMIT = 64 << 10


def version_from_binary(path: str) -> int:
    """The major version `PATH --version` prints (2 or 3). Raises UsageError."""
    try:
        output = _run_bounded([path, "--version"], VERSION_TIMEOUT_SECONDS, VERSION_OUTPUT_LIMIT)
    except OSError as exc:
        raise UsageError(f"--registry-binary {path}: could not run it: {exc}") from None
    if output is None:
        raise UsageError(
            f"--registry-binary {path}: could not run it: `{path} --version` did not finish "
            f"within {VERSION_TIMEOUT_SECONDS:.0f} s"
        )
    match = _VERSION_RE.search(" " + output)
    if match is None or match.group(1) not in ("2", "3"):
        raise UsageError(
            f"--registry-binary {path}: no distribution 2.x or 3.x version in its --version output"
        )
    return int(match.group(1))


def _run_bounded(argv: list[str], timeout: float, limit: int) -> str | None:
    """The first `limit` bytes of what `argv` prints (stdout and stderr), or None when it
    does not exit within `timeout`. It runs in a process group of its own, stopped whole
    when the time is up or the output is long enough: a wrapper script's children (a
    `sleep` in it) never outlive the check, and endless output is never held."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    finished = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while size < limit:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:  # end of output: wait for the exit within the time left
                    proc.wait(max(0.0, deadline - time.monotonic()))
                    finished = True
                    break
                chunks.append(chunk)
                size += len(chunk)
            else:
                finished = True  # enough output read: what follows does not matter
    except subprocess.TimeoutExpired:
        finished = False
    finally:
        if proc.poll() is None or finished is False:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
        proc.wait()
    if not finished:
        return None
    return b"".join(chunks)[:limit].decode("utf-8", "replace")


@dataclass(frozen=True)
class RunningRegistry:
    pid: int
    exe: str
    config: str | None
    same_root: bool | None  # None: could not tell
    readonly: bool | None  # None: could not tell

    def describe(self) -> str:
        mode = {True: "read-only", False: "read-write", None: "mode unknown"}[self.readonly]
        return f"pid {self.pid} ({self.exe} serve {self.config or '?'}, {mode})"


def running_registries(root: str, proc: str = "/proc") -> list[RunningRegistry]:
    """Registry processes on this machine that serve (or may serve) `root`."""
    try:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []
    try:
        root_id = _file_id(root)
    except OSError:
        return []
    found = []
    for pid in pids:
        got = _inspect(proc, pid, root_id)
        if got is not None and got.same_root is not False:
            found.append(got)
    return found


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _inspect(proc: str, pid: int, root_id: tuple[int, int]) -> RunningRegistry | None:
    base = f"{proc}/{pid}"
    try:
        with open(f"{base}/cmdline", "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return None
    if len(argv) < 2 or os.path.basename(argv[0]) not in _NAMES or "serve" not in argv[1:]:
        return None
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = argv[0]
    after = argv[argv.index("serve") + 1 :]
    config = after[0] if after else None
    env = _environ(base)
    settings: dict[str, object] = {}
    if config is not None:
        settings = _read_config(base, config, env)
    root = env.get("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") or _dig(
        settings, "storage", "filesystem", "rootdirectory"
    )
    same: bool | None = None
    storage = settings.get("storage") if isinstance(settings, dict) else None
    driver = env.get("REGISTRY_STORAGE")
    if driver is None and isinstance(storage, dict):
        drivers = set(storage) - {"delete", "maintenance", "cache", "redirect", "tag"}
        driver = next(iter(drivers)) if len(drivers) == 1 else None
    if driver is not None and driver != "filesystem":
        same = False  # s3, inmemory, ...: it serves no local folder
    elif isinstance(root, str) and root:
        container_path = f"{base}/root{root}" if root.startswith("/") else None
        try:
            same = container_path is not None and _file_id(container_path) == root_id
        except OSError:
            same = None
    readonly_setting = env.get("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED")
    readonly: bool | None
    if readonly_setting is not None:
        readonly = readonly_setting.strip().lower() == "true"
    else:
        value = _dig(settings, "storage", "maintenance", "readonly", "enabled")
        readonly = value if isinstance(value, bool) else (False if settings else None)
    return RunningRegistry(pid, exe, config, same, readonly)


def _environ(base: str) -> dict[str, str]:
    try:
        with open(f"{base}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep and key.startswith("REGISTRY_"):
            out[key] = value
    return out


def _read_config(base: str, config: str, env: dict[str, str]) -> dict[str, object]:
    candidates = [f"{base}/root{config}"] if config.startswith("/") else []
    candidates.append(os.path.join(f"{base}/cwd", config))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(loaded, dict):
            return loaded
    return {}


def _dig(settings: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(settings, dict):
            return None
        settings = settings.get(key)
    return settings


def resolve_version(given: int | None, binary: str | None, root: str | None) -> tuple[int, str]:
    """(major version, how it was found). Raises UsageError when nothing says."""
    if given is not None:
        return given, "--registry-version"
    if binary:
        return version_from_binary(binary), f"{binary} --version"
    if root is not None and os.path.isdir(root):
        for running in running_registries(root):
            if running.same_root:
                return version_from_binary(running.exe), f"registry pid {running.pid}"
    raise UsageError(
        "which distribution version collects this storage? Give --registry-version 2|3 or "
        "--registry-binary PATH (storage does not record the version, and no registry "
        "serving it runs here)"
    )
