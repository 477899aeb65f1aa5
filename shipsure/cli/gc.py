"""`shipsure gc STORAGE_ROOT`: a garbage collection that never deletes what a kept tag,
index or referrer needs; a plan first, deletions only with --apply."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shipsure.cli.common import (
    STORAGE_ROOT_HELP,
    add_journal_options,
    add_s3_options,
    journal_path,
    number,
)
from shipsure.errors import CouldNotRunError, UsageError
from shipsure.report import json_format

EPILOG = """\
Marks every tag -> index (nested) -> child -> config and layers (all that References()
lists, foreign layers included) -> referrers (by subject) in each repository, and plans:
  delete-revision      an untagged manifest nothing kept reaches (and its tag-history entries)
  delete-blob          a blob folder nothing kept references (bytes counted)
  delete-layer-link    a repository's link to a blob the plan deletes
A kept manifest whose data is missing keeps every blob of its repository (its references
cannot be known); blobs and revisions younger than --min-age are kept.

--apply carries the plan out, journaled (shipsure.plan: intent, re-check, act, result), and
is safe to re-run after being killed at any point. It refuses while a registry process on
this machine serves the same storage read-write (found through /proc, containers included).
--force skips that check: a push racing the collection can lose blobs it just uploaded, and a
registry serving while blobs vanish answers 404 for them. Stop the registry or set
storage.maintenance.readonly.enabled first. On S3 nothing can be detected: --force is needed.

examples:
  shipsure gc /var/lib/registry                  # the plan and the bytes it frees
  shipsure gc /var/lib/registry --apply
  shipsure gc /var/lib/registry --format json > gc-plan.json

exit codes: 0 planned (or applied) cleanly, 1 a deletion was refused (the storage changed
since the plan: what it names was kept), 2 bad option or not a registry storage root,
3 storage unreadable, a registry is serving the storage read-write, or some deletion failed."""


JOURNAL_NAME = "gc.jsonl"


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "gc",
        help="a safe garbage collection of registry storage (plan; --apply to delete)",
        description="Collect garbage in distribution storage without ever deleting what a "
        "kept tag, index or referrer needs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", metavar="STORAGE_ROOT", help=STORAGE_ROOT_HELP)
    parser.add_argument("--apply", action="store_true", help="carry out the plan")
    parser.add_argument(
        "--force",
        action="store_true",
        help="apply even when a registry may be serving this storage read-write (see below)",
    )
    parser.add_argument(
        "--min-age",
        type=number(),
        default=1.0,
        metavar="HOURS",
        help="keep blobs and revisions younger than this (default: 1)",
    )
    add_journal_options(parser, JOURNAL_NAME)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    add_s3_options(parser)
    parser.set_defaults(run=run)


def refuse_if_serving(root: str, force: bool) -> None:
    """Raise CouldNotRunError when a registry may serve `root` read-write (unless `force`)."""
    if force:
        return
    if root.startswith("s3://"):
        raise CouldNotRunError(
            f"{root}: cannot tell whether a registry serves this bucket; stop it or make it "
            "read-only, then pass --force"
        )
    from shipsure.gc.detect import running_registries

    serving = [r for r in running_registries(root) if r.readonly is not True]
    if serving:
        raise CouldNotRunError(
            f"a registry serves {root} read-write: {serving[0].describe()}; stop it or set "
            "storage.maintenance.readonly.enabled, or pass --force (a racing push may lose "
            "blobs)"
        )


def run(args: argparse.Namespace) -> int:
    from shipsure import plan as planning
    from shipsure.cli.scan import open_storage
    from shipsure.gc.safe import GCWriter, plan_gc

    if args.force and not args.apply:
        raise UsageError("--force only matters with --apply")
    storage = open_storage(args)
    if args.apply:
        refuse_if_serving(args.root, args.force)
    made = plan_gc(storage, min_age=args.min_age * 3600)
    outcomes: list[planning.Outcome] = []
    if args.apply:
        journal = planning.Journal(journal_path(args, JOURNAL_NAME))
        outcomes = planning.apply(made.plan, GCWriter(storage), journal)
    counts = planning.summary(outcomes)
    if args.format == "json":
        doc = made.plan.to_json() | {
            "bytes_freed": made.bytes_freed,
            "kept_manifests": made.kept_manifests,
            "kept_blobs": made.kept_blobs,
            "outcomes": [o.to_json() for o in outcomes],
        }
        sys.stdout.write(json_format.dumps(doc))
    else:
        out = sys.stdout
        if outcomes:
            for o in outcomes:
                out.write(f"  {o.describe()}\n")
            out.write(f"gc: {', '.join(f'{n} {r}' for r, n in sorted(counts.items()))}\n")
        else:
            out.write(made.plan.render_text())
        verb = "freed" if args.apply else "would free"
        out.write(
            f"gc: {made.kept_manifests} manifest(s) kept; {verb} {made.bytes_freed} bytes "
            f"({sum(1 for a in made.plan.actions if a.op == 'delete-blob')} blob(s))"
            + ("" if args.apply else "; run again with --apply to delete")
            + "\n"
        )
    return int(planning.exit_code(outcomes))
