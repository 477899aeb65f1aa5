"""Retention policy files: YAML checked against a JSON Schema, turned into `Policy` objects.

```yaml
policies:                      # the first policy whose `repositories` matches applies;
  - repositories: ["team/*"]   # repositories no policy matches keep every tag
    keep:
      any:
        - newest: 10
        - match: '^release-.*'
        - younger_than: 30d
        - semver: {per: minor, newest: 1}
    protect: [latest, stable]
```

Errors name the file and the place in it (`policies[0].keep.any[1]`) and exit 2.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

from shipsure.errors import BadInputError
from shipsure.retention.policy import (
    AllOf,
    AnyOf,
    Match,
    Newest,
    Policy,
    Rule,
    Semver,
    YoungerThan,
)

_AGE = r"^[0-9]+(\.[0-9]+)?[smhdw]$"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://shipsure.dev/schemas/retention.json",
    "type": "object",
    "additionalProperties": False,
    "required": ["policies"],
    "properties": {
        "policies": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["keep"],
                "properties": {
                    "repositories": {
                        "oneOf": [
                            {"type": "string", "minLength": 1},
                            {"type": "array", "items": {"type": "string", "minLength": 1}},
                        ]
                    },
                    "keep": {"$ref": "#/$defs/rule"},
                    "protect": {"type": "array", "items": {"type": "string", "minLength": 1}},
                },
            },
        }
    },
    "$defs": {
        "rule": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": {
                "newest": {"type": "integer", "minimum": 0},
                "match": {"type": "string", "minLength": 1},
                "younger_than": {"type": "string", "pattern": _AGE},
                "semver": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["per"],
                    "properties": {
                        "per": {"enum": ["major", "minor"]},
                        "newest": {"type": "integer", "minimum": 1},
                    },
                },
                "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/rule"}},
                "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/rule"}},
            },
        }
    },
}


def parse_age(text: str) -> float:
    """`90m`, `12h`, `30d`, `2w` -> seconds."""
    text = text.strip()
    return float(text[:-1]) * _UNITS[text[-1]]


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load(path: str | Path) -> list[Policy]:
    """Read and check a policy file. Raises BadInputError naming the file and the place."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInputError(f"policy file {name}: {reason}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise BadInputError(f"policy file {name}:{where} not valid YAML") from None
    return from_document(doc, name)


def from_document(doc: object, name: str = "policy") -> list[Policy]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise BadInputError(f"policy file {name}: {_where(best.absolute_path)}: {best.message}")
    assert isinstance(doc, Mapping)
    policies = []
    for i, item in enumerate(doc["policies"]):
        repos = item.get("repositories", "*")
        patterns = (repos,) if isinstance(repos, str) else tuple(repos)
        rule = _rule(item["keep"], f"policies[{i}].keep", name)
        policies.append(Policy(patterns, rule, frozenset(item.get("protect", ()))))
    return policies


def _rule(spec: Mapping[str, Any], where: str, name: str) -> Rule:
    ((kind, value),) = spec.items()
    if kind == "newest":
        return Newest(int(value))
    if kind == "match":
        try:
            return Match(re.compile(value))
        except re.error as exc:
            raise BadInputError(f"policy file {name}: {where}.match: {exc}") from None
    if kind == "younger_than":
        return YoungerThan(parse_age(value))
    if kind == "semver":
        return Semver(value["per"], int(value.get("newest", 1)))
    rules = tuple(_rule(r, f"{where}.{kind}[{i}]", name) for i, r in enumerate(value))
    return AnyOf(rules) if kind == "any" else AllOf(rules)


def policy_for(policies: list[Policy], repository: str) -> Policy | None:
    for policy in policies:
        if any(fnmatch.fnmatchcase(repository, p) for p in policy.repositories):
            return policy
    return None
