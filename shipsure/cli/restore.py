"""`shipsure restore REF... --from SOURCE`: push back exactly what a registry lost."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from shipsure import plan as writes
from shipsure.checks.verify import VerifyOptions, verify
from shipsure.cli.common import Progress, add_journal_options, image_reference, journal_path
from shipsure.cli.registry_options import add_registry_options, registry_from_args
from shipsure.errors import BadInputError, UsageError
from shipsure.fileio import read_regular
from shipsure.findings import ExitCode
from shipsure.model import Reference
from shipsure.recovery import open_source
from shipsure.recovery.apply import Outcome, apply_plan, still_broken
from shipsure.recovery.interface import ContentSource
from shipsure.recovery.plan import (
    Damage,
    Planner,
    RestorePlan,
    Wanted,
    damage_from_report,
)
from shipsure.recovery.render import render_outcomes, render_plan
from shipsure.registry.http import HttpRegistry
from shipsure.registry.interface import NotFoundError
from shipsure.report import json_format

JOURNAL_NAME = "restore-journal.jsonl"

EPILOG = """\
sources (--from, repeatable; the first that holds a verified copy wins):
  host[:port]            another registry, same repository names
  host[:port]/prefix     another registry, repositories under prefix/
  oci:PATH               an OCI image layout (skopeo copy ... oci:PATH)
  docker-archive:PATH    a `docker save` archive; a legacy archive (older docker, skopeo)
                         holds configs and uncompressed layers only, so manifests and
                         compressed layers restore from it only when their bytes match

how it works:
  1. checks the target (the verify walk, --deep unless --fast; or a scan report with
     --from-report) and walks each reference's tree by digest;
  2. plans exactly what is missing or broken: blobs first, then child manifests, then
     indexes and tags (never a parent before its children), with the source and bytes;
  3. with --apply, verifies every byte against its digest, pushes, journals each step.
  What no source holds becomes a rebuild plan (tags, platforms, the digest each had,
  other images sharing the lost content). Re-running after a crash is safe.

examples:
  shipsure restore localhost:5000/team/app:latest --from backup.example.com:5000
  shipsure restore --all localhost:5000 --from backup.example.com:5000 --apply
  shipsure restore localhost:5000/team/app:1.0 --from oci:/srv/layouts/app --apply
  shipsure scan --format json /var/lib/registry > scan.json
  shipsure restore --from-report scan.json --registry localhost:5000 --from mirror:5000

exit codes: 0 nothing to restore (or all restored), 1 content to restore or rebuild
(or a step failed), 2 bad input, 3 could not check."""


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "restore",
        help="restore missing or corrupt content from another copy (registry, OCI layout, "
        "docker save archive)",
        description="Find what is missing or broken in a registry and copy exactly that "
        "back from another copy, with the original digests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "references",
        nargs="*",
        metavar="REF",
        help="image references in the target (with --all: a registry or a repository)",
    )
    parser.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        required=True,
        metavar="SOURCE",
        help="where to copy from (repeatable): host[:port][/prefix], oci:PATH, docker-archive:PATH",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="REF names registries (every repository and tag) or repositories (every tag)",
    )
    parser.add_argument(
        "--from-report",
        metavar="FILE",
        help="plan from this scan (or verify) JSON report instead of checking again",
    )
    parser.add_argument(
        "--registry",
        metavar="HOST",
        help="with --from-report: the target registry the report's storage serves",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="check the target with HEADs only (default: read and hash every blob, which "
        "catches corrupted data and stale caches)",
    )
    parser.add_argument("--apply", action="store_true", help="push the plan")
    add_journal_options(parser, JOURNAL_NAME)
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="output format (text)"
    )
    add_registry_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.from_report and args.all:
        raise UsageError("--from-report and --all do not go together")
    if not args.from_report and not args.references:
        raise UsageError("name at least one REF (or --from-report FILE --registry HOST)")
    report_doc = _load_report(args.from_report) if args.from_report else None
    host, wanted_refs = _target(args)
    opened: list[HttpRegistry] = []

    def open_registry(name: str) -> HttpRegistry:
        registry = registry_from_args(args, name)
        opened.append(registry)
        return registry

    sources: list[ContentSource] = []
    try:
        target = open_registry(host)
        for text in args.sources:
            sources.append(open_source(text, open_registry))
        unlisted: list[str] = []
        wanted = list(_expand(target, wanted_refs, args.all, unlisted))
        if report_doc is not None:
            damage = damage_from_report(report_doc)
            if not wanted:
                wanted = _wanted_from_damage(damage)
            check_note = f"report {args.from_report}"
        else:
            damage, check_note = _check(target, wanted, host, args)
        planner = Planner(target, sources, damage, workers=int(args.concurrency))
        plan = planner.build(wanted)
        # --all restores what the target still lists: a repository (or registry) that
        # lists nothing was not checked, which must not read as "intact".
        plan.check_errors += [
            f"{name}: the target lists no tags here (or does not know it), so nothing was "
            f"checked; --all restores only tags the target still lists: name "
            f"{host}/REPOSITORY:TAG to bring a tag back"
            for name in unlisted
        ]
        out: TextIO = sys.stdout
        outcomes: list[Outcome] = []
        if args.apply and plan.steps:
            journal = writes.Journal(journal_path(args, JOURNAL_NAME))
            outcomes = apply_plan(
                plan.steps,
                target,
                sources,
                journal,
                workers=min(8, max(1, int(args.concurrency))),
                manifests_by_digest=planner.manifest_bytes,
            )
            plan.not_replaced = [s.label for s in still_broken(target, outcomes)]
        _emit(out, plan, outcomes, args, check_note)
        return _exit_code(plan, outcomes, args.apply)
    finally:
        for source in sources:
            source.close()
        for registry in opened:
            registry.close()


# A saved report, read whole: bounded as report merge bounds a shard report.
MAX_REPORT_BYTES = 1 << 30


def _load_report(path: str) -> dict[str, Any]:
    try:
        # A regular file only (a FIFO would wait for ever, /dev/zero never end), bounded.
        raw = read_regular(path, MAX_REPORT_BYTES)
    except OSError as exc:
        raise BadInputError(f"--from-report {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_REPORT_BYTES:
        raise BadInputError(f"--from-report {path}: over {MAX_REPORT_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadInputError(f"--from-report {path}: not a JSON report") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        raise BadInputError(f"--from-report {path}: no findings list (want scan or verify JSON)")
    return doc


def _target(args: argparse.Namespace) -> tuple[str, list[Reference]]:
    refs: list[Reference] = []
    for text in args.references:
        if args.all:
            refs.append(_registry_or_repository(text))
        else:
            refs.append(image_reference(text))
    hosts = {r.registry for r in refs}
    if args.registry:
        hosts.add(args.registry)
    if len(hosts) > 1:
        raise UsageError(f"one target registry per run (got {', '.join(sorted(hosts))})")
    if not hosts:
        raise UsageError("--from-report needs --registry HOST (the registry to restore)")
    return hosts.pop(), refs


def _registry_or_repository(text: str) -> Reference:
    """`host[:port]` (every repository) or `host[:port]/repo` (every tag)."""
    if "/" not in text:
        if not text:
            raise UsageError(f"--all {text!r}: want host[:port] or host[:port]/repository")
        return Reference(text, "")
    ref = Reference.parse(text, default_tag=False)
    if ref.tag or ref.digest:
        raise UsageError(f"--all {text!r}: name a repository, not an image")
    return ref


def _expand(
    target: HttpRegistry, refs: list[Reference], every: bool, unlisted: list[str]
) -> Iterator[Wanted]:
    """The tags to restore; with --all, what `unlisted` names gave none: a repository
    named with no tags, or a registry whose catalog lists no tag at all."""
    if not every:
        for ref in refs:
            yield Wanted(ref.repository, ref.tag, ref.digest)
        return
    for ref in refs:
        repositories = [ref.repository] if ref.repository else list(target.catalog())
        found = 0
        for repo in repositories:
            try:
                tags = sorted(target.tags(repo))
            except NotFoundError:
                continue  # distribution's NAME_UNKNOWN for a repository without tags
            found += len(tags)
            for tag in tags:
                yield Wanted(repo, tag, None)
        if not found:
            unlisted.append(f"{ref.registry}/{ref.repository}" if ref.repository else ref.registry)


def _wanted_from_damage(damage: Damage) -> list[Wanted]:
    tags = set(damage.tags_gone) | set(damage.tags_named)
    return [Wanted(repo, tag, None) for repo, tag in sorted(tags)]


def _check(
    target: HttpRegistry, wanted: list[Wanted], host: str, args: argparse.Namespace
) -> tuple[Damage, str]:
    refs = [Reference(host, w.repository, w.tag, w.digest) for w in wanted]
    progress = Progress("restore: checking")
    report = verify(
        refs,
        lambda _name: target,
        VerifyOptions(deep=not args.fast, workers=max(1, int(args.concurrency))),
        on_progress=lambda done, total: progress.update(f"{done}/{total} objects"),
    )
    progress.done()
    mode = "verify" if args.fast else "verify --deep"
    return damage_from_report(report), f"{mode}: {len(report.problems)} problems"


def _emit(
    out: TextIO,
    plan: RestorePlan,
    outcomes: list[Outcome],
    args: argparse.Namespace,
    check_note: str,
) -> None:
    if args.format == "json":
        doc = plan.to_dict()
        doc["command"] = "restore"
        doc["checked"] = check_note
        doc["applied"] = bool(args.apply)
        if args.apply:
            doc["outcomes"] = [
                {**o.step.to_dict(), "result": o.result, "reason": o.reason} for o in outcomes
            ]
        out.write(json_format.dumps(doc, sort_keys=True))
    else:
        out.write(render_plan(plan, check_note, applying=args.apply))
        if args.apply and outcomes:
            out.write(render_outcomes(outcomes, str(journal_path(args, JOURNAL_NAME))))
    out.flush()


def _exit_code(plan: RestorePlan, outcomes: list[Outcome], applied: bool) -> int:
    if plan.lost or plan.blocked or plan.not_replaced:
        return int(ExitCode.FINDINGS)
    if applied and any(o.result in ("failed", "skipped") for o in outcomes):
        return int(ExitCode.FINDINGS)
    if plan.steps and not applied:
        return int(ExitCode.FINDINGS)
    if plan.check_errors:
        return int(ExitCode.COULD_NOT_RUN)
    return int(ExitCode.CLEAN)
