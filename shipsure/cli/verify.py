"""`shipsure verify REF...`: check that everything a pushed image references can be pulled."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shipsure.checks.verify import VerifyOptions, verify
from shipsure.cli.common import Progress, add_output_options, emit, image_reference
from shipsure.cli.registry_options import (
    add_referrers_option,
    add_registry_options,
    registry_from_args,
)
from shipsure.errors import InvalidReferenceError, UsageError
from shipsure.model import Platform
from shipsure.registry.interface import Registry

EPILOG = """\
what it checks:
  tag or digest -> index -> every child manifest (nested too) -> config -> layers, and
  referrers (signatures, SBOMs) where the registry lists them. Every problem is reported,
  each with the path from the reference to the broken object.

examples:
  shipsure verify registry.example.com/team/app:1.4.2
  shipsure verify --deep --format json localhost:5000/app:latest localhost:5000/base:3
  shipsure verify --platform linux/arm64 registry.example.com/team/app@sha256:...

  post-push step in CI: fail the pipeline when anything the tag needs cannot be pulled:
    shipsure verify "$IMAGE:$CI_COMMIT_SHA" || exit 1

exit codes: 0 clean, 1 findings at or above --fail-on, 2 bad reference or option,
3 could not check (unreachable, timeouts, auth refused; never reported as "missing");
a real problem wins over "could not check" (exit 1)."""


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="verify pushed images end to end (index, children, configs, layers)",
        description="Walk each image reference through everything it references and report "
        "every piece that cannot be fetched or does not match its digest.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("references", nargs="+", metavar="REF", help="image reference")
    parser.add_argument(
        "--deep",
        action="store_true",
        help="GET and re-hash every blob and check sizes (catches corrupted bytes and "
        "short bodies behind a HEAD 200); default: HEAD only",
    )
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="only check these platforms of an index (repeatable)",
    )
    add_referrers_option(parser)
    add_output_options(parser)
    add_registry_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    references = [image_reference(text) for text in args.references]
    platforms = tuple(_parse_platform(text) for text in args.platform)
    registries: dict[str, Registry] = {}
    try:
        for ref in references:
            if ref.registry not in registries:
                registries[ref.registry] = registry_from_args(args, ref.registry)
        progress = Progress("verify")
        report = verify(
            references,
            registries.__getitem__,
            VerifyOptions(
                deep=args.deep,
                platforms=platforms,
                referrers=args.referrers,
                workers=max(1, int(args.concurrency)),
            ),
            on_progress=lambda done, total: progress.update(f"{done}/{total} objects"),
        )
        progress.done()
    finally:
        for registry in registries.values():
            registry.close()
    return emit(report, args, sys.stdout)


def _parse_platform(text: str) -> Platform:
    try:
        return Platform.parse(text)
    except InvalidReferenceError as exc:
        raise UsageError(str(exc)) from None
