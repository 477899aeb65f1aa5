"""`shipsure report merge FILE...`: join the JSON reports of a sharded scan or probe."""

from __future__ import annotations

import argparse
import json
from typing import Any

from shipsure.checks.probe_merge import is_probe_report, merge_probe_reports
from shipsure.checks.scan.merge import merge_reports
from shipsure.cli.common import add_output_options, emit
from shipsure.errors import BadInputError
from shipsure.fileio import read_regular

# A shard report lists every digest its repositories reference: large, but bounded.
MAX_REPORT_BYTES = 1 << 30

EPILOG = """\
Joins the reports of `shipsure scan --shard I/N --format json` (one per shard, all N
needed) into one report, and runs the global blob check there once: a blob is reported
unreferenced only when no shard's repositories reference it. Reports of
`shipsure probe --shard I/N --format json` are joined the same way (`--format prometheus`
gives the probe's metrics for the whole registry).

examples:
  shipsure report merge part-0.json part-1.json part-2.json part-3.json
  shipsure report merge --format prometheus parts/*.json > scan.prom

exit codes: 0 clean, 1 findings at or above --fail-on, 2 a file is unreadable, not a
sharded scan report, or a shard is missing or given twice, 3 something could not be
checked during the scans."""


def add_parser(sub: Any) -> None:
    report: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="work with saved JSON reports (merge the shards of a scan or probe)",
        description="Work with saved JSON reports: `report merge` joins the shards of a scan "
        "or probe.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = report.add_subparsers(dest="report_command", metavar="ACTION")
    actions.required = True
    parser: argparse.ArgumentParser = actions.add_parser(
        "merge",
        help="join the JSON reports of a sharded scan or probe",
        description="Join the JSON reports of a sharded `shipsure scan` or `shipsure probe` "
        "into one report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSON report of one shard")
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = []
    for name in args.files:
        try:
            raw = read_regular(name, MAX_REPORT_BYTES)
        except OSError as exc:
            raise BadInputError(f"{name}: {exc.strerror or exc}") from None
        if len(raw) > MAX_REPORT_BYTES:
            raise BadInputError(f"{name}: over {MAX_REPORT_BYTES} bytes")
        try:
            loaded.append((name, json.loads(raw)))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise BadInputError(f"{name}: not JSON ({exc})") from None
    probes = [name for name, doc in loaded if is_probe_report(doc)]
    if probes and len(probes) != len(loaded):
        other = next(name for name, doc in loaded if not is_probe_report(doc))
        raise BadInputError(
            f"{other}: not a probe report like {probes[0]}: merge the shards of one scan "
            "or one probe"
        )
    if probes:
        from shipsure.cli.probe import publish

        return publish(merge_probe_reports(loaded), args)
    return emit(merge_reports(loaded), args)
