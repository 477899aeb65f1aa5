"""`shipsure gc-check STORAGE_ROOT`: what `registry garbage-collect` would delete, and which
tags that breaks, before anyone runs it."""

from __future__ import annotations

import argparse
import gc
import re
import sys
from typing import Any

from shipsure.cli.common import STORAGE_ROOT_HELP, add_output_options, add_s3_options, emit
from shipsure.errors import BadInputError
from shipsure.fileio import read_regular
from shipsure.findings import Finding, Report, kind
from shipsure.report import OutputFormat
from shipsure.report.terminal import printable

EPILOG = """\
It replays the mark-and-sweep of the given distribution version on the storage, flaws
included (registry-facts §1, §7), then walks what every tag really needs (tag -> index ->
children -> config and layers, referrers) and reports, by tag:
  gc-breaks-tag          (error)   the run deletes what a pulling image needs
  gc-deletes-referrer    (warning) the run deletes a signature/SBOM/attestation of a tag
  gc-deepens-damage      (warning) the tag is already broken; the run deletes what a repair needs
  gc-skips-lost-manifest (warning) a manifest's data is missing: its blobs will be swept
  gc-would-abort         (warning) the collector stops with this error and deletes nothing
  check-error            (error)   what the collector would read could not be (unreadable,
                                   or through a link leaving the storage root): the
                                   prediction is unknown (exit 3), never a guessed abort
JSON adds `would_delete` (manifests, blobs, layer_links, bytes) and `gc` (version, flags,
abort error, unknown).

The version decides the prediction: --registry-version 2|3, or --registry-binary PATH (its
--version is asked), or the version of a registry process here serving the same root.

--from-dry-run FILE reads a saved `garbage-collect --dry-run` output instead of the storage
and flags the tell-tale: a digest both "eligible for deletion" and marked by an index.

examples:
  shipsure gc-check /var/lib/registry --registry-version 2 --delete-untagged
  shipsure gc-check /var/lib/registry --registry-binary /usr/bin/docker-registry -m
  shipsure gc-check --from-dry-run gc-dry-run.txt
  # a weekly job that refuses to collect when it would break anything:
  shipsure gc-check /var/lib/registry -m --registry-version 2 && \\
      registry garbage-collect --delete-untagged /etc/docker/registry/config.yml

exit codes: 0 the run breaks nothing, 1 it would (or it would abort), 2 bad input,
unknown version or not a registry storage root, 3 storage unreadable."""


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "gc-check",
        help="predict what registry garbage-collect deletes and which tags it breaks",
        description="Predict exactly what a distribution 2.x or 3.x garbage collection "
        "would delete from this storage, and name the tags it would break.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "root",
        metavar="STORAGE_ROOT",
        nargs="?",
        help=STORAGE_ROOT_HELP,
    )
    add_gc_options(parser)
    parser.add_argument(
        "--from-dry-run",
        metavar="FILE",
        help="read a saved `garbage-collect --dry-run` output (- for stdin) instead of storage",
    )
    add_output_options(parser)
    parser.set_defaults(run=run)


def add_gc_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m",
        "--delete-untagged",
        action="store_true",
        help="predict `garbage-collect --delete-untagged`",
    )
    parser.add_argument(
        "--registry-version",
        type=_major_version,
        metavar="2|3",
        help="distribution version whose collector runs (2: 2.8.x, 3: 3.x; written as the "
        "registry says it, 2.8.2 or v3.0.0, the major version decides)",
    )
    parser.add_argument(
        "--registry-binary",
        metavar="PATH",
        help="ask this registry binary for its version (e.g. /usr/bin/docker-registry)",
    )
    add_s3_options(parser)


_VERSION_RE = re.compile(r"v?([0-9]+)(?:\.[0-9]+){0,2}")


def _major_version(text: str) -> int:
    """`2`, `2.8`, `2.8.2`, `v3.0.0` (as `registry --version` prints it): the major."""
    found = _VERSION_RE.fullmatch(text.strip())
    major = int(found.group(1)) if found else None
    if major not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"{text!r}: want distribution 2 or 3 (2, 2.8, 2.8.2, 3, v3.0.0)"
        )
    return major


def run(args: argparse.Namespace) -> int:
    if args.from_dry_run:
        return _from_dry_run(args)
    if not args.root:
        raise BadInputError("gc-check needs STORAGE_ROOT (or --from-dry-run FILE)")
    from shipsure.cli.scan import open_storage
    from shipsure.gc.detect import resolve_version
    from shipsure.gc.predict import check

    local = None if args.root.startswith("s3://") else args.root
    storage = open_storage(args)  # a root that is no registry's says so before the version
    version, how = resolve_version(args.registry_version, args.registry_binary, local)
    # The check builds millions of small objects that live to the end of the run; Python's
    # cyclic collector would scan them again and again (time grows faster than the
    # registry). Nothing here makes reference cycles that need it.
    gc.disable()
    try:
        result = check(storage, version, args.delete_untagged)
    finally:
        gc.enable()
    result.report.meta["gc"]["version_from"] = how
    code = emit(result.report, args)
    if OutputFormat(args.format) == OutputFormat.TEXT:
        _print_summary(result.report)
    return code


def _print_summary(report: Report) -> None:
    gc = report.meta["gc"]
    wd = report.meta["would_delete"]
    flags = " --delete-untagged" if gc["delete_untagged"] else ""
    head = f"garbage-collect{flags} (distribution {gc['registry_version']}.x)"
    if gc["aborted"]:
        sys.stdout.write(f"{head} would stop: {printable(gc['aborted'])}\n")
    if gc.get("unknown"):
        unknown = printable(gc["unknown"])
        sys.stdout.write(f"{head}: what it would delete is unknown ({unknown})\n")
        return
    sys.stdout.write(
        f"{head} would delete {len(wd['manifests'])} manifest revision(s), "
        f"{len(wd['blobs'])} blob(s) ({wd['bytes']} bytes), "
        f"{len(wd['layer_links'])} layer link(s)\n"
    )


# A dry-run of a large registry under -m names every blob it marks: tens of MiB.
MAX_DRY_RUN_BYTES = 256 << 20


def _from_dry_run(args: argparse.Namespace) -> int:
    from shipsure.gc.dryrun import parse

    name = args.from_dry_run
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(MAX_DRY_RUN_BYTES + 1)
        else:
            # A regular file only: a FIFO would wait for a writer for ever.
            raw = read_regular(name, MAX_DRY_RUN_BYTES)
    except OSError as exc:
        raise BadInputError(f"--from-dry-run {name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DRY_RUN_BYTES:
        # Judging the first part alone could miss what the rest shows.
        raise BadInputError(f"--from-dry-run {name}: over {MAX_DRY_RUN_BYTES} bytes")
    dry = parse(raw.decode("utf-8", "replace"))
    if dry.summary is None and not dry.errors:
        # Every run that finishes prints "N blobs marked, ..."; one that stops prints its
        # error. Neither: empty, cut short, or another file, never "nothing to delete".
        raise BadInputError(
            f"--from-dry-run {name}: not a whole garbage-collect --dry-run output (no "
            "'N blobs marked, M blobs and K manifests eligible for deletion' line)"
        )
    report = Report("gc-check")
    for t in dry.tell_tales:
        via = f" (referenced by marked manifest {t.parent})" if t.parent else ""
        report.add(
            Finding(
                "gc-breaks-tag",
                kind("gc-breaks-tag").severity,
                f"the run deletes manifest {t.digest}, which a marked manifest references"
                f"{via}: a child of a tagged index; its tag stops pulling",
                repository=t.repository or None,
                digest=t.digest,
                path=(f"manifest {t.parent}", t.digest) if t.parent else (t.digest,),
            )
        )
    for error in dry.errors:
        report.add(
            Finding(
                "gc-would-abort", kind("gc-would-abort").severity, error, details={"error": error}
            )
        )
    report.meta["would_delete"] = {
        "manifests": [{"repository": r, "digest": d} for r, d in dry.manifests],
        "blobs": sorted(dry.blobs),
        "layer_links": [{"repository": r, "digest": d} for r, d in dry.layer_links],
    }
    report.checked["dry_run_lines"] = dry.lines
    return emit(report, args)
