"""`shipsure retain`: retention policies planned by tag, applied over the registry API or on
storage, never deleting what a kept tag, index or referrer needs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from shipsure.cli.common import add_journal_options, journal_path
from shipsure.cli.registry_options import add_registry_options
from shipsure.errors import UsageError
from shipsure.model import is_repository_name
from shipsure.report import json_format
from shipsure.report.terminal import printable

EPILOG = """\
policy file (YAML; `shipsure retain --print-schema` prints its JSON Schema):
  policies:                        # first match wins; unmatched repositories keep all tags
    - repositories: ["team/*"]     # fnmatch globs (default "*")
      keep:
        any:                       # or all: [...]; rules nest
          - newest: 10             # the 10 most recently created tags
          - match: 'release-.*'    # full-match regular expression
          - younger_than: 30d      # s, m, h, d, w
          - semver: {per: minor, newest: 1}   # newest version of each major.minor line
      protect: [latest, stable]    # always kept

Referrers fallback tags (sha256-<hex>, cosign's .sig/.att) are kept exactly while their
subject is. A deleted tag whose manifest a kept tag, index or referrer still needs loses
only the tag (over the API the way `regctl tag delete` does: DELETE by tag where allowed,
else a throw-away image pushed to the tag and deleted by digest); otherwise its manifest is
deleted by digest. On storage (--on-storage) only tag folders are removed. Either way,
`shipsure gc` then frees the space (never `registry garbage-collect -m` on 2.x).

examples:
  shipsure retain --policy retention.yaml --registry registry.example.com
  shipsure retain --policy retention.yaml --registry localhost:5000 --apply
  shipsure retain --policy retention.yaml --on-storage /var/lib/registry --apply && \\
      shipsure gc /var/lib/registry --apply

exit codes: 0 planned (or applied) cleanly, 1 an action was refused (what it would delete
changed since the plan: run again to re-plan), 2 bad policy file or options or not a
registry storage root, 3 registry or storage unreachable, or an action failed."""


JOURNAL_NAME = "retain.jsonl"


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "retain",
        help="apply retention policies by tag without orphaning what kept images need",
        description="Plan which tags retention policies delete, and delete them safely.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy", metavar="FILE", help="the YAML policy file")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--registry", metavar="HOST", help="work over this registry's API")
    where.add_argument("--on-storage", metavar="ROOT", help="work on this storage root")
    parser.add_argument(
        "--repository",
        action="append",
        metavar="NAME",
        help="only these repositories (repeatable; default: the whole catalog)",
    )
    parser.add_argument("--apply", action="store_true", help="carry out the plan")
    add_journal_options(parser, JOURNAL_NAME)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--print-schema", action="store_true", help="print the policy file's JSON Schema"
    )
    add_registry_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from shipsure import plan as planning
    from shipsure.retention.config import SCHEMA, load
    from shipsure.retention.plan import plan_retention

    if args.print_schema:
        sys.stdout.write(json.dumps(SCHEMA, indent=2) + "\n")
        return 0
    if not args.policy:
        raise UsageError("retain needs --policy FILE")
    if not (args.registry or args.on_storage):
        raise UsageError("retain needs --registry HOST or --on-storage ROOT")
    for name in args.repository or []:
        if not is_repository_name(name):
            raise UsageError(
                f"--repository {name[:160]!r}: not a repository name (lower-case ASCII "
                "components such as team/app)"
            )
    policies = load(args.policy)
    now = time.time()
    writer: planning.Writer
    closer = None
    if args.on_storage:
        from shipsure.retention.storage import StorageTagWriter, read_images
        from shipsure.storage.filesystem import FilesystemStorage
        from shipsure.storage.inventory import check_registry_root

        storage = FilesystemStorage(args.on_storage)
        check_registry_root(storage)
        images, _problems = read_images(storage)
        if args.repository:
            images = [i for i in images if i.repository in set(args.repository)]
        writer = StorageTagWriter(storage)
        made = plan_retention(images, policies, now, delete_manifests=False)
    else:
        from shipsure.cli.registry_options import registry_from_args
        from shipsure.retention.api import ApiWriter
        from shipsure.retention.api import read_images as api_images

        registry = registry_from_args(args, args.registry)
        closer = registry.close
        try:
            images, untagged = api_images(registry, args.repository)
        except BaseException:
            registry.close()
            raise
        for name in untagged:
            # distribution answers NAME_UNKNOWN alike for "no tags" and "never held".
            sys.stderr.write(
                f"shipsure: warning: {args.registry}: repository {printable(name)} has no "
                "tags (or does not exist): nothing to retain there\n"
            )
        writer = ApiWriter(registry)
        made = plan_retention(images, policies, now, delete_manifests=True)
    try:
        outcomes: list[planning.Outcome] = []
        if args.apply:
            journal = planning.Journal(journal_path(args, JOURNAL_NAME))
            outcomes = planning.apply(made.plan, writer, journal)
    finally:
        if closer is not None:
            closer()
    counts = planning.summary(outcomes)
    if args.format == "json":
        doc = made.plan.to_json() | {
            "bytes": made.bytes,
            "tags": [d.__dict__ for d in made.decisions],
            "outcomes": [o.to_json() for o in outcomes],
        }
        sys.stdout.write(json_format.dumps(doc))
    else:
        out = sys.stdout
        for d in made.decisions:
            line = f"{'keep' if d.keep else 'delete':6} {d.repository}:{d.tag}  ({d.why})"
            out.write(f"  {printable(line)}\n")
        if outcomes:
            for o in outcomes:
                out.write(f"  {o.describe()}\n")
        else:
            out.write(made.plan.render_text())
        kept = sum(1 for d in made.decisions if d.keep)
        dropped = len(made.decisions) - kept
        # After --apply, say what happened to each action: "deleted" must not hide a failure.
        results = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
        out.write(
            f"retain: {kept} tag(s) kept, {dropped} "
            + (f"dropped (actions: {results})" if outcomes else "to delete")
            + f"; a collection afterwards frees about {made.bytes} bytes"
            + ("" if args.apply else "; run again with --apply to delete")
            + "\n"
        )
    return int(planning.exit_code(outcomes))
