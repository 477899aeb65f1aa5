"""Lint configuration: which rules are off where, and which events each secret allows.

Both live beside the code they describe, under the linted root:

`.shipsure/lint.yaml`::

    disable:
      - WP007                                   # everywhere
      - rule: PIN003
        paths: ["ci/legacy/*.yaml", "test/**"]  # fnmatch globs, relative to the root

`.shipsure/secrets.yaml` (Woodpecker keeps each secret's allowed events on the server;
declare them here so WP002 can compare)::

    secrets:
      registry_password: {events: [push, tag]}
      deploy_token: [push, manual]              # short form

A secret used with `from_secret` but not declared gets the default of a secret created with
woodpecker-cli: push, tag, release, deployment (neither manual nor cron). UI-created secrets
default to push only; declare those.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipsure.errors import BadInputError
from shipsure.fileio import read_regular
from shipsure.lint.rules import RULES
from shipsure.lint.yaml_lines import error_text, load_one

CONFIG_FILE = Path(".shipsure/lint.yaml")
SECRETS_FILE = Path(".shipsure/secrets.yaml")
# Config files are a few lines; refuse anything that is clearly not one.
MAX_CONFIG_BYTES = 1 << 20

EVENTS = (
    "push",
    "pull_request",
    "pull_request_closed",
    "pull_request_metadata",
    "tag",
    "deployment",
    "cron",
    "manual",
    "release",
)
DEFAULT_SECRET_EVENTS = frozenset({"push", "tag", "release", "deployment"})


@dataclass(frozen=True)
class Disable:
    rule: str
    paths: tuple[str, ...] = ()  # empty: everywhere

    def covers(self, rule: str, relpath: str) -> bool:
        if rule != self.rule:
            return False
        return not self.paths or any(fnmatch.fnmatch(relpath, p) for p in self.paths)


@dataclass
class LintConfig:
    disables: list[Disable] = field(default_factory=list)
    secrets: dict[str, frozenset[str]] = field(default_factory=dict)

    def is_disabled(self, rule: str, relpath: str) -> bool:
        return any(d.covers(rule, relpath) for d in self.disables)

    def secret_events(self, name: str) -> frozenset[str]:
        return self.secrets.get(name, DEFAULT_SECRET_EVENTS)


def _read_yaml(path: Path) -> Any:
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
        if len(raw) > MAX_CONFIG_BYTES:
            raise BadInputError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
        text = raw.decode("utf-8")
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: cannot read: {exc}") from None
    try:
        return load_one(text)
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML: {error_text(exc)}") from None


def check_rule_id(rule: str, where: str) -> str:
    if rule not in RULES:
        raise BadInputError(f"{where}: unknown rule {rule!r} (known: {', '.join(RULES)})")
    return rule


def parse_disables(doc: Any, where: str) -> list[Disable]:
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) - {"disable"}:
        raise BadInputError(f"{where}: expected a mapping with one key, `disable`")
    items = doc.get("disable") or []
    if not isinstance(items, list):
        raise BadInputError(f"{where}: `disable` must be a list")
    out: list[Disable] = []
    for item in items:
        if isinstance(item, str):
            out.append(Disable(check_rule_id(item, where)))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("rule"), str):
            raise BadInputError(f"{where}: each `disable` item is a rule id or {{rule, paths}}")
        if set(item) - {"rule", "paths"}:
            raise BadInputError(
                f"{where}: unknown keys in `disable` item: {sorted(set(item) - {'rule', 'paths'})}"
            )
        paths = item.get("paths") or []
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BadInputError(f"{where}: `paths` must be a list of glob strings")
        out.append(Disable(check_rule_id(item["rule"], where), tuple(paths)))
    return out


def parse_secrets(doc: Any, where: str) -> dict[str, frozenset[str]]:
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("secrets"), dict):
        raise BadInputError(f"{where}: expected `secrets:` mapping secret names to their events")
    out: dict[str, frozenset[str]] = {}
    for name, spec in doc["secrets"].items():
        events = spec.get("events") if isinstance(spec, dict) else spec
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise BadInputError(f"{where}: secret {name!r}: `events` must be a list of events")
        unknown = sorted(set(events) - set(EVENTS))
        if unknown:
            raise BadInputError(
                f"{where}: secret {name!r}: unknown events {unknown} (known: {', '.join(EVENTS)})"
            )
        out[str(name)] = frozenset(events)
    return out


def load_config(root: Path, config: Path | None = None, secrets: Path | None = None) -> LintConfig:
    """The config for one linted root. Explicit files must exist; the default ones are
    optional."""
    result = LintConfig()
    config_path = config if config is not None else root / CONFIG_FILE
    if config is not None or config_path.is_file():
        result.disables = parse_disables(_read_yaml(config_path), str(config_path))
    secrets_path = secrets if secrets is not None else root / SECRETS_FILE
    if secrets is not None or secrets_path.is_file():
        result.secrets = parse_secrets(_read_yaml(secrets_path), str(secrets_path))
    return result
