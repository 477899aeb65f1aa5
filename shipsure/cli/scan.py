"""`shipsure scan STORAGE_ROOT`: offline fsck of a registry's storage, with safe repairs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shipsure.checks.scan.options import (
    DEFAULT_RECHECK_DELAY,
    DEFAULT_UNREFERENCED_MIN_AGE,
    DEFAULT_UPLOAD_MAX_AGE,
    DEFAULT_WORKERS,
    ScanOptions,
    start_hashing,
)
from shipsure.cli.common import (
    STORAGE_ROOT_HELP,
    Progress,
    add_journal_options,
    add_output_options,
    add_s3_options,
    emit,
    journal_path,
    number,
    shard,
    whole_number,
)
from shipsure.errors import BadInputError, UsageError
from shipsure.plan import Journal, Outcome, Plan, apply, exit_code
from shipsure.report import OutputFormat
from shipsure.storage.interface import Storage
from shipsure.storage.inventory import check_registry_root

EPILOG = """\
what it finds (registry-facts §4 and more), each with repository, digest and the tags it
breaks (tag -> index -> child -> blob):
  tag-revision-missing, tag-manifest-missing, tag-link-missing   the tag itself answers 404
  index-child-relinkable / index-child-lost     child manifest without revision link
  revision-data-missing, blob-missing           links whose data is gone
  layer-link-missing, layer-link-dangling, malformed-link
  manifest-digest-mismatch, manifest-invalid, blob-size-mismatch,
  blob-digest-mismatch (--verify-content)
  blob-unreferenced (GC candidates, with bytes), upload-stale (by upload id),
  temp-file-stale (left by an interrupted write)
  link-outside-root: a symlink leaving the storage root (nothing behind it is read)
  check-error: a path that could not be read (never reported as missing)

repairs (printed as a plan; carried out only with --apply, journaled, safe to re-run):
  link-revision   re-create a revision link when the manifest data is present and verified
  link-layer      re-create a _layers link when the blob exists and a manifest uses it
  remove-upload   remove uploads older than --upload-max-age
  remove-layer-link  only with --remove-dangling-layer-links
  remove-temp-file   remove temp files unchanged for an hour
  Manifests and blobs are never deleted, and nothing is written or deleted through a
  symlink that leaves the storage root (such an action is refused and reported).
  The journal goes to scan-journal.jsonl in the state folder (see --state-dir) unless
  --journal says otherwise; after a crash, run the same command again: it re-scans,
  settles what the killed run left open and applies what is still needed.

examples:
  shipsure scan /var/lib/registry
  shipsure scan --verify-content --format json /var/lib/registry > scan.json
  shipsure scan /var/lib/registry --apply --journal /var/log/shipsure/scan-repair.jsonl
  shipsure scan s3://my-bucket/registry --s3-endpoint https://s3.example.com

  split one registry across the pods of a Kubernetes Indexed Job, then join:
    shipsure scan /var/lib/registry --shard "$JOB_COMPLETION_INDEX/8" --format json > part.json
    shipsure report merge part-*.json

Safe while the registry runs: every fault is re-read before it is reported, and one whose
files changed within --recheck-delay seconds is re-read again after that long, so a
concurrent push or delete never becomes a finding.

exit codes: 0 clean, 1 findings at or above --fail-on (or, with --apply, a repair refused
because the storage changed since the scan), 2 bad option or not a registry storage root,
3 storage unreadable, something could not be checked, or a repair failed."""


JOURNAL_NAME = "scan-journal.jsonl"


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "scan",
        help="check a registry's storage offline (filesystem or S3) and repair safely",
        description="Read distribution's storage directly and report every on-disk fault, "
        "with the tags it breaks; optionally re-link what can be re-linked.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "root",
        metavar="STORAGE_ROOT",
        help=STORAGE_ROOT_HELP,
    )
    parser.add_argument(
        "--verify-content",
        action="store_true",
        help="re-hash every referenced blob against its digest (reads all the data)",
    )
    parser.add_argument(
        "--upload-max-age",
        type=number(above=True),
        default=DEFAULT_UPLOAD_MAX_AGE / 86400,
        metavar="DAYS",
        help="uploads older than this are stale (default: 7, distribution's purge age)",
    )
    parser.add_argument(
        "--unreferenced-min-age",
        type=number(),
        default=DEFAULT_UNREFERENCED_MIN_AGE / 3600,
        metavar="HOURS",
        help="report unreferenced blobs only when older than this, so a push in progress "
        "is not reported (default: 1)",
    )
    parser.add_argument(
        "--shard",
        type=shard,
        metavar="I/N",
        help="scan only the repositories of shard I of N (0-based); shard 0 also lists "
        "the global blob store; join the JSON reports with `shipsure report merge`",
    )
    parser.add_argument(
        "--recheck-delay",
        type=number(),
        default=DEFAULT_RECHECK_DELAY,
        metavar="SECONDS",
        help="a fault whose files changed within this many seconds (a push or delete may be "
        "half-way) is re-checked again after this long; older faults are re-checked once, "
        "at once (default: %(default)s; 0 when nothing writes to the storage during the scan)",
    )
    parser.add_argument(
        "--workers",
        type=whole_number(1, 64),
        metavar="N",
        help="processes walking repositories on a local filesystem (default: one per CPU "
        f"core); threads reading S3, where they wait on the network (default: {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="carry out the repair plan (default: only print it)",
    )
    parser.add_argument(
        "--remove-dangling-layer-links",
        action="store_true",
        help="also plan removing _layers links whose data is gone (turns a cached "
        "'200 with 0 bytes' into an honest 404)",
    )
    add_journal_options(parser, JOURNAL_NAME)
    add_s3_options(parser)
    add_output_options(parser)
    parser.set_defaults(run=run)


def open_storage(args: argparse.Namespace) -> Storage:
    root: str = args.root
    if root.startswith("s3://"):
        from shipsure.storage.s3 import S3Storage

        bucket, _, prefix = root[len("s3://") :].partition("/")
        if not bucket:
            raise BadInputError(f"storage root {root!r}: want s3://BUCKET[/PREFIX]")
        storage: Storage = S3Storage(
            bucket, prefix, endpoint_url=args.s3_endpoint, region=args.s3_region
        )
    elif args.s3_endpoint or args.s3_region:
        raise UsageError("--s3-endpoint and --s3-region need an s3:// storage root")
    else:
        from shipsure.storage.filesystem import FilesystemStorage

        storage = FilesystemStorage(root)
    check_registry_root(storage)
    return storage


def run(args: argparse.Namespace) -> int:
    storage = open_storage(args)
    options = ScanOptions(
        verify_content=args.verify_content,
        upload_max_age=args.upload_max_age * 86400,
        unreferenced_min_age=args.unreferenced_min_age * 3600,
        shard=args.shard,
        workers=args.workers,
        recheck_delay=args.recheck_delay,
    )
    # With --verify-content, hashing every blob takes about as long as the walk: its process
    # starts now and hashes on the other core while this one loads the walk's modules (the
    # imports below, 50-100 ms), instead of after them.
    hashing = start_hashing(storage, options)
    progress = Progress("scan")
    try:
        from shipsure.checks.scan.core import scan

        report = scan(
            storage,
            options,
            lambda done, total: progress.update(f"{done}/{total} repositories"),
            hashing=hashing,
        )
    finally:
        progress.done()
        if hashing is not None:
            hashing.stop()  # scan stops it; this covers an interrupt before scan took it
    from shipsure.checks.scan.apply import RepairWriter, to_plan
    from shipsure.checks.scan.repair import plan_repairs

    plan = to_plan(
        plan_repairs(report.findings, remove_dangling_layer_links=args.remove_dangling_layer_links)
    )
    report.meta["repair_plan"] = plan.to_json()["actions"]
    outcomes: list[Outcome] = []
    journal = journal_path(args, JOURNAL_NAME) if args.apply else None
    if journal is not None:
        # Applied even when empty: it settles what an interrupted run left open.
        writer = RepairWriter(storage, upload_max_age=options.upload_max_age)
        outcomes = apply(plan, writer, Journal(journal))
        report.meta["repairs"] = [o.to_json() for o in outcomes]
    code = emit(report, args)
    if OutputFormat(args.format) == OutputFormat.TEXT:
        _print_plan(plan, outcomes, journal)
    # A repair that failed (3) or was refused (1) outranks a clean report of the findings.
    return max(code, exit_code(outcomes))


def _print_plan(plan: Plan, outcomes: list[Outcome], journal: Path | None) -> None:
    out = sys.stdout
    if outcomes:
        out.write(f"repairs ({len(outcomes)}; journal: {journal}):\n")
        for o in outcomes:
            out.write(f"  {o.describe()}\n")
        return
    if not plan.actions or journal is not None:
        return
    n = len(plan.actions)
    out.write(f"repair plan ({n} actions; run again with --apply to carry it out):\n")
    for a in plan.actions:
        out.write(f"  {a.describe()}\n")
