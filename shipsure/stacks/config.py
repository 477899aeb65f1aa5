"""Stack configuration: what a stack is, which files change everything, how to run them.

shipsure reads, at the repository root, the first of:

* `.shipsure/stacks.yaml` — the whole file is the stacks configuration;
* `shipsure.yaml` — the `stacks:` key of it.

Every key is optional; without any file the defaults below apply::

    markers: ["*.tf", "*.tf.json", "*.tofu", "*.tofu.json", "terragrunt.hcl"]
                                          # a folder holding one of these is a stack
    exclude: ["modules/**", "**/modules/**", "**/.terraform/**"]  # never stacks (a folder
                                          # named here excludes the folders below it too)
    include: []                           # stacks even when every marker file in them is
                                          # linked into other stacks (shared files)
    root_is_stack: false                  # the root usually holds the shared terragrunt.hcl
    globals:                              # a change here means: all stacks
      - terragrunt.hcl
      - .woodpecker/**
      - .woodpecker.yml
      - .woodpecker.yaml
      - .github/workflows/**
      - .terraform-version
      - .tool-versions
      - shipsure.yaml
      - .shipsure/stacks.yaml
    parent_files: ["*.hcl", "*.tfvars", "*.tfvars.json"]
      # such a file in a folder that is not a stack (e.g. live/prod/env.hcl, read with
      # terragrunt's find_in_parent_folders) changes every stack below that folder
    watch:                                # extra files a stack depends on (globs; a
                                          # folder, as in `globals`, covers its files)
      "live/*/app": ["config/app/**"]
    binary: terraform                     # or tofu, terragrunt, or a path
    parallel: 4                           # default for --parallel
    step_timeout: 3600                    # seconds for one init/plan/apply
    state_dir: .shipsure/state            # last applied commit, drift state, journal
    log_dir: .shipsure/logs               # one log file per stack
    lock_prefix: ""                       # prepended to stack paths to form lock keys

Patterns are anchored at the repository root (see `pathglob`); markers match file names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipsure.errors import BadInputError
from shipsure.fileio import read_regular

# A settings file is a few hundred bytes; anything near this is not one.
MAX_CONFIG_BYTES = 1 << 20

CONFIG_FILES = (".shipsure/stacks.yaml", "shipsure.yaml")

# Terraform reads `*.tf` and `*.tf.json` (what CDKTF and generators write); OpenTofu also
# `*.tofu` and `*.tofu.json`.
DEFAULT_MARKERS = ("*.tf", "*.tf.json", "*.tofu", "*.tofu.json", "terragrunt.hcl")
DEFAULT_EXCLUDE = ("modules/**", "**/modules/**", "**/.terraform/**")
DEFAULT_GLOBALS = (
    "terragrunt.hcl",
    ".woodpecker/**",
    ".woodpecker.yml",
    ".woodpecker.yaml",
    ".github/workflows/**",
    ".terraform-version",
    ".tool-versions",
    "shipsure.yaml",
    ".shipsure/stacks.yaml",
)
DEFAULT_PARENT_FILES = ("*.hcl", "*.tfvars", "*.tfvars.json")


@dataclass(frozen=True)
class StacksConfig:
    markers: tuple[str, ...] = DEFAULT_MARKERS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    include: tuple[str, ...] = ()
    root_is_stack: bool = False
    globals: tuple[str, ...] = DEFAULT_GLOBALS
    parent_files: tuple[str, ...] = DEFAULT_PARENT_FILES
    watch: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    binary: str = "terraform"
    parallel: int = 4
    step_timeout: float = 3600.0
    state_dir: str = ".shipsure/state"
    log_dir: str = ".shipsure/logs"
    lock_prefix: str = ""
    # Where the settings came from, for messages ("defaults" when no file).
    source: str = "defaults"


def load_config(repo_root: Path, explicit: Path | None = None) -> StacksConfig:
    """Read the configuration file (explicit path first), or return the defaults."""
    if explicit is not None:
        return _from_file(explicit, key=None)
    for name in CONFIG_FILES:
        path = repo_root / name
        if path.is_file():
            return _from_file(path, key="stacks" if name == "shipsure.yaml" else None)
    return StacksConfig()


def _from_file(path: Path, key: str | None) -> StacksConfig:
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
        if len(raw) > MAX_CONFIG_BYTES:
            raise BadInputError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
        data = yaml.safe_load(raw.decode("utf-8"))
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read configuration: {exc.strerror}") from None
    except RecursionError:
        raise BadInputError(f"{path}: not valid YAML: nested too deeply to read") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"{path}: not valid YAML: {first}") from None
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    if data is None:
        return StacksConfig(source=str(path))
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: the stacks configuration must be a mapping")
    return parse_config(data, str(path))


_LIST_KEYS = ("markers", "exclude", "include", "globals", "parent_files")
_KNOWN = frozenset(
    {
        *_LIST_KEYS,
        "root_is_stack",
        "watch",
        "binary",
        "parallel",
        "step_timeout",
        "state_dir",
        "log_dir",
        "lock_prefix",
    }
)


def parse_config(data: Mapping[str, Any], source: str) -> StacksConfig:
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise BadInputError(
            f"{source}: unknown stacks setting(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_KNOWN))})"
        )
    values: dict[str, Any] = {"source": source}
    for key in _LIST_KEYS:
        if key in data:
            values[key] = _strings(data[key], f"{source}: {key}")
    if "watch" in data:
        watch = data["watch"]
        if not isinstance(watch, dict):
            raise BadInputError(f"{source}: watch must map stack patterns to file patterns")
        values["watch"] = {
            str(stack): _strings(files, f"{source}: watch[{stack}]")
            for stack, files in watch.items()
        }
    if "root_is_stack" in data:
        if not isinstance(data["root_is_stack"], bool):
            raise BadInputError(f"{source}: root_is_stack must be true or false")
        values["root_is_stack"] = data["root_is_stack"]
    for key in ("binary", "state_dir", "log_dir", "lock_prefix"):
        if key in data:
            if not isinstance(data[key], str) or (key != "lock_prefix" and not data[key]):
                raise BadInputError(f"{source}: {key} must be a non-empty string")
            values[key] = data[key]
    if "parallel" in data:
        values["parallel"] = positive_int(data["parallel"], f"{source}: parallel")
    if "step_timeout" in data:
        timeout = data["step_timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise BadInputError(f"{source}: step_timeout must be a positive number of seconds")
        values["step_timeout"] = float(timeout)
    return StacksConfig(**values)


def positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{what} must be a whole number of at least 1, not {value!r}")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadInputError(f"{what} must be a list of non-empty strings")
    return tuple(value)
