"""`shipsure lint [PATH...]`: floating image tags and Woodpecker pipeline pitfalls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shipsure.cli.common import Progress, add_journal_options, add_output_options, journal_path
from shipsure.cli.registry_options import add_registry_options, registry_from_args
from shipsure.errors import UsageError
from shipsure.findings import ExitCode
from shipsure.lint import render, sarif
from shipsure.lint.config import SECRETS_FILE, check_rule_id
from shipsure.lint.engine import LintOptions, lint_paths
from shipsure.lint.fix import apply_plan, plan_fixes
from shipsure.lint.rules import RULES
from shipsure.registry.interface import Registry
from shipsure.report import json_format
from shipsure.report.terminal import printable

JOURNAL_NAME = "lint-fix.jsonl"


def _rule_table() -> str:
    return "\n".join(f"  {r.id}  {r.severity.label:7}  {r.summary}" for r in RULES.values())


EPILOG = f"""\
rules:
{_rule_table()}

what it reads (directories are walked; .git, node_modules, .venv are skipped):
  Dockerfile, *.Dockerfile, Dockerfile.*     FROM (stages, --platform, ARG defaults), COPY --from,
                                             RUN --mount=...,from=
  docker-compose*.yml, compose*.yml          services.*.image
  .woodpecker.yml, .woodpecker/*.yml         step/service images (matrix rows) and the WP rules
  .github/workflows/*.yml                    container, services.*.image (strategy.matrix rows),
                                             uses: docker://
  .gitlab-ci.yml, *.gitlab-ci.yml, .gitlab/ci/  image, services (variables, parallel:matrix)
  any other *.yml / *.yaml                   Kubernetes documents (containers, initContainers,
                                             ephemeralContainers; Argo, Tekton); Helm chart
                                             templates: images written literally, templated
                                             ones as PIN005 (`helm template` output is complete)

configuration (under each linted directory):
  .shipsure/lint.yaml     disable: [WP007, {{rule: PIN003, paths: ["ci/legacy/*.yaml"]}}]
  .shipsure/secrets.yaml  secrets: {{registry_password: {{events: [push, tag]}}}}
  A secret not declared is taken as created by woodpecker-cli: push, tag, release,
  deployment (never manual or cron).

examples:
  shipsure lint                                   lint the current directory
  shipsure lint --format sarif . > lint.sarif     for GitHub code scanning
  shipsure lint --disable WP007 --fail-on error ci/
  shipsure lint --fix .                           print the tag@digest pins it would make
  shipsure lint --fix --apply .                   make them (journaled in {JOURNAL_NAME}
                                                  in the state folder: see --state-dir)
  A Dockerfile that is a symlink is never replaced by a copy: a link to a file inside the
  repository edits that file (once); a link leaving the repository is reported, not followed.

exit codes: 0 clean, 1 findings at or above --fail-on, 2 bad path, option or config,
3 a file could not be checked (or, with --fix, a pin could not be resolved)."""


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "lint",
        help="find floating image tags and Woodpecker pipeline pitfalls",
        description="Report image references that float (no tag, latest, major-only) or are "
        "known-bad, and Woodpecker pipelines that misbehave on manual, cron or secret "
        "events; each finding with file:line and a rule id.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", default=["."], metavar="PATH", help="files or directories (default: .)"
    )
    # lint has its own renderers: file:line text, JSON and SARIF 2.1.0.
    add_output_options(parser, formats=("text", "json", "sarif"))
    parser.add_argument(
        "--disable",
        action="append",
        default=[],
        metavar="RULE[,RULE]",
        help="turn rules off everywhere (repeatable)",
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="rule config (default: .shipsure/lint.yaml)"
    )
    parser.add_argument(
        "--secrets",
        type=Path,
        metavar="FILE",
        help=f"Woodpecker secrets and their events (default: {SECRETS_FILE})",
    )
    fix = parser.add_argument_group("pinning")
    fix.add_argument(
        "--fix",
        action="store_true",
        help="plan pins to tag@digest for PIN001-PIN003, resolving each tag at its registry",
    )
    fix.add_argument("--apply", action="store_true", help="with --fix: rewrite the files")
    add_journal_options(fix, JOURNAL_NAME)
    add_registry_options(parser)
    parser.set_defaults(run=run)


def _disabled(values: list[str]) -> frozenset[str]:
    out = set()
    for value in values:
        for rule in value.split(","):
            if rule.strip():
                out.add(check_rule_id(rule.strip(), "--disable"))
    return frozenset(out)


def run(args: argparse.Namespace) -> int:
    if args.apply and not args.fix:
        raise UsageError("--apply needs --fix")
    if args.fix and args.format == "sarif":
        raise UsageError("--fix prints a plan: use --format text or json")
    options = LintOptions(_disabled(args.disable), args.config, args.secrets)
    progress = Progress("lint")
    try:
        result = lint_paths(args.paths, options, progress.update)
    finally:
        progress.done()
    report = result.report
    if not args.fix:
        out = {"text": render.render_text, "json": render.render_json, "sarif": sarif.render}
        sys.stdout.write(out[args.format](report))
        return int(report.exit_code(args.fail_on))

    def open_registry(host: str) -> Registry:
        return registry_from_args(args, host)

    roots = [Path(p) for p in args.paths]
    plan = plan_fixes(report, result.images, Path, open_registry, roots)
    if args.format == "json":
        sys.stdout.write(json_format.dumps(plan.to_dict()))
    else:
        sys.stdout.write(plan.render_text())
    if not args.apply:
        if plan.changes:
            print("re-run with --apply to make these changes", file=sys.stderr)
        code = ExitCode.FINDINGS if plan.changes else ExitCode.CLEAN
        return int(ExitCode.COULD_NOT_RUN if plan.unresolved and not plan.changes else code)
    journal = journal_path(args, JOURNAL_NAME)
    applied = apply_plan(plan, journal)
    for o in applied.outcomes:
        if o.recovered:
            print(f"shipsure: earlier interrupted run: {o.describe()}", file=sys.stderr)
    for step, why in applied.skipped:
        print(
            f"shipsure: {printable(f'{step.file}:{step.line}: not changed: {why}')}",
            file=sys.stderr,
        )
    print(f"applied {len(applied.applied)} change(s); journal: {journal}", file=sys.stderr)
    if plan.unresolved or applied.skipped:
        return int(ExitCode.COULD_NOT_RUN)
    return int(ExitCode.CLEAN)
