"""Woodpecker pipeline rules WP001-WP010. Pure: parsed workflows in, findings out.

Woodpecker semantics this module encodes (checked against Woodpecker v1-v3):
- a `when:` list is an OR of its items; the conditions inside one item are AND-ed;
- an item without `event` matches every event; a workflow or step without `when` too;
- a step runs on event E when some workflow-level item and some step-level item accept E;
- every manual trigger runs every workflow that accepts `manual`; `evaluate` in the same
  item is the guard (it may test variables passed with the manual run);
- `path` is only honoured for push and pull-request events; `cron` filters need
  `event: cron` in the same item;
- secrets carry allowed events; `when` (including `evaluate`) is checked before secrets are
  resolved, and secrets are never visible to `evaluate`.

WP001 validates against Woodpecker's own JSON schema as vendored by check-jsonschema
(`--builtin-schema vendor.woodpecker-ci`), imported from the installed package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shipsure.findings import Finding
from shipsure.lint.config import EVENTS, LintConfig
from shipsure.lint.rules import check_error, finding
from shipsure.lint.yaml_lines import LineDict, LineList, Mark, mark_of

ALL_EVENTS = frozenset(EVENTS)
# Woodpecker fetches changed files for these events only; elsewhere `path` is ignored.
PATH_EVENTS = frozenset({"push", "pull_request", "pull_request_closed", "pull_request_metadata"})
# Events on which an apply must not run without an explicit guard.
UNREVIEWED_EVENTS = ("manual", "cron", "pull_request")
_MAX_SCHEMA_ERRORS = 20
_MAX_MESSAGE = 240

# `terraform apply`, `tofu destroy`, `terragrunt run-all apply`, `shipsure stacks run apply`:
# the verb must be its own word (`plan -out=apply.tfplan` and `plan -destroy` are plans).
_APPLY_RE = re.compile(
    r"\b(?:terraform|tofu|terragrunt|shipsure\s+stacks)\b[^\n;&|]*?"
    r"(?<![\w./=-])(?:apply|destroy)(?![\w./=-])",
    re.IGNORECASE,
)
_STRING_LITERAL_RE = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Step:
    name: str
    line: int
    node: LineDict
    when: list[LineDict]


@dataclass
class Workflow:
    """One parsed Woodpecker file. `doc` is None when it could not be parsed."""

    name: str
    file: str
    doc: LineDict | None
    when: list[LineDict] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def when_items(value: Any) -> list[LineDict]:
    if isinstance(value, LineDict):
        return [value]
    if isinstance(value, LineList):
        return [item for item in value if isinstance(item, LineDict)]
    return []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def explicit_events(item: LineDict) -> frozenset[str] | None:
    """The events an item names, or None when it has no `event` (it matches all)."""
    if "event" not in item:
        return None
    value = item["event"]
    if isinstance(value, dict):
        include = set(_strings(value.get("include"))) or set(ALL_EVENTS)
        return frozenset(include - set(_strings(value.get("exclude"))))
    return frozenset(_strings(value))


def item_accepts(item: LineDict | None) -> frozenset[str]:
    if item is None:
        return ALL_EVENTS
    events = explicit_events(item)
    return ALL_EVENTS if events is None else events


def accepts(items: list[LineDict]) -> frozenset[str]:
    if not items:
        return ALL_EVENTS
    out: set[str] = set()
    for item in items:
        out |= item_accepts(item)
    return frozenset(out)


def build_workflow(name: str, file: str, doc: Any) -> Workflow:
    if not isinstance(doc, LineDict):
        return Workflow(name, file, None)
    workflow = Workflow(name, file, doc, when_items(doc.get("when")))
    steps = doc.get("steps")
    if isinstance(steps, LineDict):
        for step_name, node in steps.items():
            if isinstance(node, LineDict):
                workflow.steps.append(
                    Step(
                        str(step_name),
                        steps.key_line(step_name),
                        node,
                        when_items(node.get("when")),
                    )
                )
    elif isinstance(steps, LineList):
        for index, node in enumerate(steps):
            if isinstance(node, LineDict):
                label = str(node.get("name", f"#{index + 1}"))
                workflow.steps.append(
                    Step(label, steps.item_mark(index).line, node, when_items(node.get("when")))
                )
    return workflow


def workflow_events(workflow: Workflow) -> frozenset[str]:
    """Events on which at least one step of the workflow runs."""
    steps: set[str] = set()
    for step in workflow.steps:
        steps |= accepts(step.when)
    return accepts(workflow.when) & frozenset(steps)


def paths(
    workflow: Workflow, step: Step, event: str
) -> Iterator[tuple[LineDict | None, LineDict | None]]:
    """Every (workflow item, step item) pair through which `step` runs on `event`. None
    stands for "no `when` at this level"."""
    roots: list[LineDict | None] = list(workflow.when) or [None]
    leaves: list[LineDict | None] = list(step.when) or [None]
    for root in roots:
        if event not in item_accepts(root):
            continue
        for leaf in leaves:
            if event in item_accepts(leaf):
                yield root, leaf


def _names(item: LineDict | None, event: str) -> bool:
    """The item names `event` explicitly."""
    if item is None:
        return False
    events = explicit_events(item)
    return events is not None and event in events


def _has(item: LineDict | None, key: str) -> bool:
    return item is not None and key in item


# --- WP001 -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _validator() -> Any:
    from check_jsonschema.builtin_schemas import get_builtin_schema
    from jsonschema import Draft7Validator  # type: ignore[import-untyped]

    return Draft7Validator(get_builtin_schema("vendor.woodpecker-ci"))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _most_specific(error: Any) -> Any:
    """Descend `oneOf`/`anyOf` failures to the error that explains them: the deepest,
    preferring a wrong value over a wrong type (the type error is usually the branch that was
    never meant), then the shortest message."""
    best = error
    while best.context:
        best = max(
            best.context,
            key=lambda e: (len(e.absolute_path), e.validator != "type", -len(e.message)),
        )
    return best


def _unexpected_key_mark(error: Any) -> Mark | None:
    """For "Additional properties are not allowed", the line of the first offending key."""
    instance = error.instance
    if error.validator != "additionalProperties" or not isinstance(instance, LineDict):
        return None
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    for key in instance:
        if key not in allowed:
            return instance.key_marks.get(key)
    return None


def schema_findings(workflow: Workflow) -> list[Finding]:
    try:
        validator = _validator()
    except ImportError:
        return [
            check_error(
                workflow.file,
                1,
                "could not check against Woodpecker's schema: check-jsonschema is not "
                "installed (pip install 'shipsure[lint]')",
            )
        ]
    out: list[Finding] = []
    errors = sorted(
        validator.iter_errors(workflow.doc), key=lambda e: list(map(str, e.absolute_path))
    )
    for error in errors[:_MAX_SCHEMA_ERRORS]:
        best = _most_specific(error)
        mark = _unexpected_key_mark(best) or mark_of(workflow.doc, list(best.absolute_path))
        where = "/".join(str(p) for p in best.absolute_path) or "(top level)"
        out.append(
            finding(
                "WP001",
                workflow.file,
                mark.line if mark else 1,
                f"fails Woodpecker's schema at {where}: {_short(best.message)}",
                column=mark.column if mark else None,
            )
        )
    return out


# --- secrets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretUse:
    name: str
    line: int
    column: int


def secret_uses(step: Step) -> list[SecretUse]:
    """`from_secret` anywhere in `environment`/`settings`, and the legacy `secrets:` list."""
    out: list[SecretUse] = []

    def walk(node: Any, depth: int) -> None:
        if depth > 16:
            return
        if isinstance(node, LineDict):
            secret = node.get("from_secret")
            if isinstance(secret, str):
                mark = node.value_mark("from_secret")
                out.append(SecretUse(secret, mark.line, mark.column))
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, LineList):
            for item in node:
                walk(item, depth + 1)

    for key in ("environment", "settings"):
        walk(step.node.get(key), 0)
    legacy = step.node.get("secrets")
    if isinstance(legacy, LineList):
        for index, item in enumerate(legacy):
            name = item.get("source") if isinstance(item, LineDict) else item
            if isinstance(name, str):
                mark = legacy.item_mark(index)
                out.append(SecretUse(name, mark.line, mark.column))
    return out


def _sorted_events(events: frozenset[str] | set[str]) -> str:
    return ", ".join(e for e in EVENTS if e in events)


# --- the rules -------------------------------------------------------------------------


class _Collector:
    """Findings of one workflow, one per (rule, line) so overlapping paths report once."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, int, str]] = set()

    def add(
        self, rule: str, line: int, message: str, column: int | None = None, key: str = ""
    ) -> None:
        if (rule, line, key) in self._seen:
            return
        self._seen.add((rule, line, key))
        self.findings.append(finding(rule, self.workflow.file, line, message, column=column))


def _all_items(workflow: Workflow) -> Iterator[tuple[str, list[LineDict]]]:
    yield "workflow", workflow.when
    for step in workflow.steps:
        yield f"step {step.name}", step.when


def _wp002(c: _Collector, config: LintConfig) -> None:
    """One finding per written `from_secret`, naming every step that reaches it: steps that
    share it through a YAML anchor (`environment: *logins`) all fail on the same events."""
    workflow = c.workflow
    by_use: dict[tuple[int, int, str], list[tuple[Step, set[str]]]] = {}
    for step in workflow.steps:
        reachable = accepts(workflow.when) & accepts(step.when)
        for use in secret_uses(step):
            bad = set(reachable - config.secret_events(use.name))
            if bad:
                by_use.setdefault((use.line, use.column, use.name), []).append((step, bad))
    for (line, column, name), hits in by_use.items():
        allowed = config.secret_events(name)
        declared = "declared" if name in config.secrets else "default, not declared"
        all_bad: set[str] = set().union(*(bad for _, bad in hits))
        if all(bad == all_bad for _, bad in hits):
            who = ("step " if len(hits) == 1 else "steps ") + ", ".join(s.name for s, _ in hits)
            runs = f"{who} {'runs' if len(hits) == 1 else 'run'} on {_sorted_events(all_bad)}"
        else:
            runs = "; ".join(f"step {s.name} runs on {_sorted_events(bad)}" for s, bad in hits)
        c.add(
            "WP002",
            line,
            f"{runs} but secret {name!r} is allowed only on {_sorted_events(allowed)} "
            f"({declared}): the pipeline errors on those events; narrow the steps' `when` or "
            "allow the events on the secret",
            column,
            key=name,
        )


def _wp003(c: _Collector, manual_workflows: list[str]) -> None:
    others = [name for name in manual_workflows if name != c.workflow.name]
    if c.workflow.name not in manual_workflows or not others:
        return
    for step in c.workflow.steps:
        for root, leaf in paths(c.workflow, step, "manual"):
            if _has(root, "evaluate") or _has(leaf, "evaluate"):
                continue
            item = root if _names(root, "manual") else leaf if _names(leaf, "manual") else None
            if item is None:
                continue  # no explicit manual: an unfiltered workflow is WP007's finding
            c.add(
                "WP003",
                item.mark.line,
                f"accepts `manual` without `evaluate`, as do the workflows "
                f"{', '.join(sorted(others))}: every manual trigger runs all of them; add an "
                "`evaluate` on a variable passed with the manual run to this item",
                item.mark.column,
            )


def _wp004(c: _Collector) -> None:
    for where, items in _all_items(c.workflow):
        if len(items) < 2 or not any("event" in item for item in items):
            continue
        for item in items:
            keys = [k for k in ("evaluate", "branch", "path") if k in item]
            if "event" not in item and keys:
                c.add(
                    "WP004",
                    item.mark.line,
                    f"{where}: this `when` item has {', '.join(keys)} but no `event`; items are "
                    "OR-ed, so it matches every event (manual and cron included); move the "
                    "condition into the item with the event",
                    item.mark.column,
                )


def _wp005(c: _Collector) -> None:
    workflow_accepts = accepts(c.workflow.when)
    for where, items in _all_items(c.workflow):
        # A step item only ever sees the events its workflow accepts.
        reach = ALL_EVENTS if where == "workflow" else workflow_accepts
        for item in items:
            if "path" not in item:
                continue
            ignored = (item_accepts(item) & reach) - PATH_EVENTS
            if ignored:
                mark = item.key_marks.get("path", item.mark)
                c.add(
                    "WP005",
                    mark.line,
                    f"{where}: `path` is ignored on {_sorted_events(ignored)}, which this item "
                    "accepts; the condition does not hold there",
                    mark.column,
                )


def _wp006(c: _Collector) -> None:
    for where, items in _all_items(c.workflow):
        for item in items:
            if "cron" in item and not _names(item, "cron"):
                mark = item.key_marks.get("cron", item.mark)
                c.add(
                    "WP006",
                    mark.line,
                    f"{where}: `cron` filter without `event: cron` in the same item: it never "
                    "narrows which cron job runs this",
                    mark.column,
                )
    for step in c.workflow.steps:
        for root, leaf in paths(c.workflow, step, "cron"):
            if _has(root, "cron") or _has(leaf, "cron"):
                continue
            cron_item = leaf if _names(leaf, "cron") else root if _names(root, "cron") else None
            if cron_item is None:
                continue
            item = cron_item
            c.add(
                "WP006",
                item.mark.line,
                f"step {step.name} runs on every cron job: this item accepts `event: cron` with "
                "no `cron:` name filter",
                item.mark.column,
            )


def _wp007(c: _Collector) -> None:
    workflow = c.workflow
    if any("event" in item for item in workflow.when):
        return
    unfiltered = [s for s in workflow.steps if not any("event" in item for item in s.when)]
    if unfiltered:
        names = ", ".join(s.name for s in unfiltered)
        c.add(
            "WP007",
            unfiltered[0].line,
            f"no event filter on the workflow nor on step(s) {names}: they run on every event, "
            "manual and cron included; add `when: - event: [...]`",
        )


def evaluate_names(expression: str) -> list[str]:
    """Identifiers an `evaluate` expression reads (string literals removed)."""
    return _IDENTIFIER_RE.findall(_STRING_LITERAL_RE.sub(" ", expression))


def _wp008(c: _Collector, secret_names: set[str]) -> None:
    upper = {name.upper(): name for name in secret_names}
    for where, items in _all_items(c.workflow):
        for item in items:
            expression = item.get("evaluate")
            if not isinstance(expression, str):
                continue
            for name in evaluate_names(expression):
                # CI_* are Woodpecker's own variables; manual-run variables are not secrets.
                if name.upper().startswith("CI_") or name.upper() not in upper:
                    continue
                mark = item.value_mark("evaluate")
                c.add(
                    "WP008",
                    mark.line,
                    f"{where}: `evaluate` reads {name!r}, which is the secret "
                    f"{upper[name.upper()]!r}: secrets are not available to `evaluate`",
                    mark.column,
                    key=name.upper(),
                )


def is_apply_step(step: Step) -> bool:
    texts = _strings(step.node.get("commands")) + _strings(step.node.get("entrypoint"))
    if any(_APPLY_RE.search(text) for text in texts):
        return True
    image = step.node.get("image")
    settings = step.node.get("settings")
    if isinstance(image, str) and re.search(r"terraform|tofu|terragrunt", image, re.IGNORECASE):
        return bool(re.search(r"\b(apply|destroy)\b", repr(settings)))
    return False


def _wp009(c: _Collector) -> None:
    for step in c.workflow.steps:
        if not is_apply_step(step):
            continue
        unguarded: list[str] = []
        for event in UNREVIEWED_EVENTS:
            for root, leaf in paths(c.workflow, step, event):
                guarded = _has(root, "evaluate") or _has(leaf, "evaluate")
                # A named cron job is a deliberate schedule: that is a guard for cron.
                if event == "cron":
                    guarded = guarded or _has(root, "cron") or _has(leaf, "cron")
                if not guarded:
                    unguarded.append(event)
                    break
        if unguarded:
            c.add(
                "WP009",
                step.line,
                f"step {step.name} applies or destroys infrastructure and runs on "
                f"{', '.join(unguarded)} without a guard: add `evaluate` (e.g. on a variable "
                "passed with the manual run) or drop those events",
            )


def _depends(doc: LineDict) -> Iterator[tuple[str, bool, int, int]]:
    value = doc.get("depends_on")
    if isinstance(value, str):
        mark = doc.value_mark("depends_on")
        yield value, False, mark.line, mark.column
    elif isinstance(value, LineList):
        for index, item in enumerate(value):
            mark = value.item_mark(index)
            if isinstance(item, str):
                yield item, False, mark.line, mark.column
            elif isinstance(item, LineDict) and isinstance(item.get("name"), str):
                yield item["name"], item.get("optional") is True, mark.line, mark.column


# `when` keys that can skip a workflow on an event it accepts (Woodpecker's constraint set);
# `path` only filters where Woodpecker knows the changed files.
_FILTER_KEYS = ("evaluate", "branch", "path", "ref", "cron", "instance", "repo", "platform")


def _conditions(
    root: LineDict | None, leaf: LineDict | None, event: str
) -> frozenset[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for item in (root, leaf):
        if item is None:
            continue
        for key in _FILTER_KEYS:
            if key in item and not (key == "path" and event not in PATH_EVENTS):
                out.add((key, _normal(item[key])))
    return frozenset(out)


def _normal(value: Any) -> str:
    """A filter value in one spelling: `branch: main` and `branch: [main]` are the same."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = sorted(set(value))
        return items[0] if len(items) == 1 else f"[{', '.join(items)}]"
    if isinstance(value, dict):
        return repr(sorted((str(k), _normal(v)) for k, v in value.items()))
    return repr(value)


def _run_conditions(workflow: Workflow, event: str) -> list[frozenset[tuple[str, str]]]:
    """The filter conditions under which some step of `workflow` runs on `event`, one set per
    path; an empty set means it runs on every such event."""
    return [
        _conditions(root, leaf, event)
        for step in workflow.steps
        for root, leaf in paths(workflow, step, event)
    ]


def _describe(conditions: frozenset[tuple[str, str]]) -> str:
    return " and ".join(f"{key}: {value}" for key, value in sorted(conditions))


def _wp010(c: _Collector, by_name: dict[str, Workflow]) -> None:
    """A workflow is dropped when a workflow it depends on is skipped (Woodpecker removes
    dependants of skipped workflows unless `optional: true`): skipped because it does not
    accept the event, or because a filter (`evaluate`, `branch`, `path`, ...) excludes it
    where the dependant has no such filter."""
    workflow = c.workflow
    if workflow.doc is None:
        return
    runs_on = workflow_events(workflow)
    for name, optional, line, column in _depends(workflow.doc):
        if optional:
            continue
        dependency = by_name.get(name)
        if dependency is None or dependency.doc is None:
            c.add(
                "WP010",
                line,
                f"depends on {name!r}, which is not a workflow of this configuration: this "
                "workflow is always dropped (or mark it `optional: true`)",
                column,
            )
            continue
        missing = runs_on - workflow_events(dependency)
        if missing:
            c.add(
                "WP010",
                line,
                f"depends on {name!r}, which does not run on {_sorted_events(missing)}: this "
                "workflow is dropped on those events too; align the filters or use "
                f"`depends_on: [{{name: {name}, optional: true}}]`",
                column,
            )
        filtered: dict[str, frozenset[tuple[str, str]]] = {}
        for event in EVENTS:
            if event not in runs_on or event in missing:
                continue
            theirs = _run_conditions(dependency, event)
            for ours in _run_conditions(workflow, event):
                # Covered when some way the dependency runs needs no condition we lack.
                if not any(cond <= ours for cond in theirs):
                    filtered[event] = min(theirs, key=len)
                    break
        if filtered:
            first = next(iter(filtered.values()))
            c.add(
                "WP010",
                line,
                f"depends on {name!r}, which runs on {_sorted_events(set(filtered))} only when "
                f"{_describe(first)}, a filter this workflow lacks: whenever it skips, this "
                "workflow is dropped too; give both the same filter or use "
                f"`depends_on: [{{name: {name}, optional: true}}]`",
                column,
                key="filtered",
            )


def lint_workflows(workflows: list[Workflow], config: LintConfig) -> list[Finding]:
    """All WP findings for the workflows of one configuration (one `.woodpecker/` folder or
    one `.woodpecker.yaml`): WP003 and WP010 look across workflows."""
    parsed = [w for w in workflows if w.doc is not None]
    manual = [w.name for w in parsed if "manual" in workflow_events(w)]
    by_name = {w.name: w for w in parsed}
    secret_names = set(config.secrets)
    for workflow in parsed:
        for step in workflow.steps:
            secret_names |= {use.name for use in secret_uses(step)}
    out: list[Finding] = []
    checks: list[Callable[[_Collector], None]] = [
        lambda c: _wp002(c, config),
        lambda c: _wp003(c, manual),
        _wp004,
        _wp005,
        _wp006,
        _wp007,
        lambda c: _wp008(c, secret_names),
        _wp009,
        lambda c: _wp010(c, by_name),
    ]
    for workflow in parsed:
        out.extend(schema_findings(workflow))
        collector = _Collector(workflow)
        for check in checks:
            check(collector)
        out.extend(collector.findings)
    return out
