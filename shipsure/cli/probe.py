"""`shipsure probe REGISTRY`: walk every repository and tag of a registry, as a pull would."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from shipsure.checks.probe import DEFAULT_PAGE_SIZE, ProbeOptions, probe
from shipsure.checks.probe_state import (
    advance,
    digests_to_rehash,
    load_state,
    repositories_to_remember,
    save_state,
)
from shipsure.checks.scan.shard import Shard
from shipsure.cli.common import Progress, add_output_options, shard, whole_number
from shipsure.cli.registry_options import (
    add_probe_options,
    add_referrers_option,
    add_registry_options,
    registry_from_args,
)
from shipsure.errors import CouldNotRunError, UsageError
from shipsure.fileio import write_atomic
from shipsure.findings import Report
from shipsure.report import json_format, probe_text

# Read through this name so tests can set the hour.
_clock = time.time

EPILOG = """\
what it checks:
  every repository of the catalog (following its pagination), every tag, and each tag's
  whole tree as `shipsure verify` does (index -> children -> config -> layers, referrers),
  each object once per repository. A registry that is busy, restarting or refusing
  credentials gives "could not check" (exit 3), never a missing object.

examples:
  shipsure probe registry.example.com
  shipsure probe --state /var/lib/shipsure/probe.json \\
      --textfile /var/lib/node_exporter/textfile/shipsure.prom registry.example.com
  shipsure probe --shard "$JOB_COMPLETION_INDEX/4" --format json registry:5000 > part.json
  shipsure report merge part-*.json
  shipsure probe --repo 'team/*' --tag '^v?[0-9]' --max-tags 20 --deep-sample 5 reg:5000

exit codes: 0 clean, 1 problems found, 2 bad option or state file, 3 could not check
(part of the registry, the catalog, or the metrics output)."""


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "probe",
        help="walk a whole registry (every repository and tag) and report what a pull would hit",
        description="Walk every repository and tag of a registry end to end and report every "
        "missing or corrupted piece, with states and coverage for monitoring.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("registry", metavar="REGISTRY", help="registry host[:port]")
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="GLOB",
        help="only repositories matching this glob, e.g. 'team/*' (repeatable)",
    )
    parser.add_argument("--tag", metavar="REGEX", help="only tags this regular expression finds")
    parser.add_argument(
        "--max-tags",
        type=whole_number(1, 1_000_000),
        metavar="N",
        help="only the N greatest tags of each repository in version order (1.10 after "
        "1.9): the registry API records no push time",
    )
    parser.add_argument(
        "--deep", action="store_true", help="GET and re-hash every blob (default: HEAD)"
    )
    add_probe_options(parser)
    add_referrers_option(parser)
    parser.add_argument(
        "--shard",
        type=shard,
        default=Shard(0, 1),
        metavar="I/N",
        help="probe only the repositories of shard I of N (0-based; by a hash of the name)",
    )
    parser.add_argument(
        "--page-size",
        type=whole_number(1, 1000),
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"catalog page size asked for (default: {DEFAULT_PAGE_SIZE}); a registry that "
        "refuses it is asked without one",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="keep what this run saw in FILE (atomic write) and say what is new, what "
        "recovered, and since when",
    )
    parser.add_argument(
        "--textfile",
        metavar="PATH",
        help="also write the metrics to PATH for node-exporter's textfile collector (atomic)",
    )
    parser.add_argument(
        "--pushgateway", metavar="URL", help="also push the metrics to this Pushgateway"
    )
    parser.add_argument(
        "--max-repository-labels",
        type=whole_number(1, 100_000),
        default=100,
        metavar="N",
        help="repositories with their own label value in the metrics; the rest are summed "
        'under repository="(other)" (default: 100)',
    )
    add_output_options(parser)
    add_registry_options(parser)
    parser.set_defaults(run=run)


def _regex(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"--tag {text!r}: not a regular expression ({exc})") from None


def run(args: argparse.Namespace) -> int:
    pattern = _regex(args.tag)
    if args.pushgateway:
        _pushgateway_target(args.pushgateway)  # a bad URL is a usage error before the walk
    if args.textfile and Path(args.textfile).is_dir():
        # Found before the walk, not after it: the folder is the collector's, the file ours.
        folder = args.textfile.rstrip("/")
        raise UsageError(f"--textfile {args.textfile}: a folder; give e.g. {folder}/shipsure.prom")
    if args.textfile and not args.textfile.endswith(".prom"):
        # The collector reads *.prom only: any other name is written and never scraped.
        print(
            f"shipsure: warning: --textfile {args.textfile}: node-exporter's textfile "
            "collector reads only *.prom files",
            file=sys.stderr,
        )
    previous = load_state(args.state) if args.state else None
    # With --state, runs are counted from 0 in the state, so consecutive runs take
    # consecutive buckets. (A first run numbered by the hour, then 1, 2, ...: at an odd
    # hour the first two runs took the same bucket and half the blobs waited a run more
    # than the promised ceil(100/PERCENT).) Without a state, the hour stands in for it.
    if previous is not None:
        run_number = previous.runs
    else:
        run_number = 0 if args.state else int(_clock() // 3600)
    options = ProbeOptions(
        repositories=tuple(args.repo),
        tag_pattern=pattern,
        max_tags=args.max_tags,
        deep=args.deep,
        deep_sample=args.deep_sample,
        run_number=run_number,
        shard=args.shard,
        workers=max(1, int(args.concurrency)),
        requests_per_second=args.rate,
        page_size=args.page_size,
        referrers=args.referrers,
        remember_tags_of=repositories_to_remember(previous),
        deep_digests=digests_to_rehash(previous),
    )
    _refuse_a_repository(args.registry)
    registry = registry_from_args(args, args.registry)
    if previous is not None and (previous.registry, previous.shard) != (
        registry.host,
        str(args.shard),
    ):
        registry.close()
        raise UsageError(
            f"--state {args.state} holds {previous.registry} shard {previous.shard}, not "
            f"{registry.host} shard {args.shard}: use one state file per registry and shard"
        )
    progress = Progress("probe")
    try:
        report = probe(registry, options, on_progress=progress.update)
    finally:
        progress.done()
        registry.close()
    if args.state:
        save_state(args.state, advance(report, previous))
    return publish(report, args)


def publish(report: Report, args: argparse.Namespace) -> int:
    """Print the report, write the textfile, push; the exit code the report implies, or 3
    when a metrics output failed on an otherwise clean run."""
    from shipsure.report import probe_metrics

    labels = int(getattr(args, "max_repository_labels", probe_metrics.DEFAULT_MAX_REPOSITORIES))
    if args.format == "prometheus":
        text = probe_metrics.render(report, labels)
    elif args.format == "json":
        text = json_format.render(report)
    else:
        text = probe_text.render(report)
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.format != "text":
        # Text says it in its summary; json and prometheus runs (cron, CI) say it here.
        meta = report.meta.get("probe", {})
        for glob in meta.get("repository_globs_unmatched", []):
            print(f"shipsure: warning: --repo {glob!r} matched no repository", file=sys.stderr)
        for name in meta.get("repositories_unknown", []):
            warning = f"--repo {name!r}: {probe_text.UNKNOWN_REPOSITORY}"
            print(f"shipsure: warning: {warning}", file=sys.stderr)
    code = int(report.exit_code(args.fail_on))
    try:
        if getattr(args, "textfile", None):
            _write_textfile(args.textfile, probe_metrics.render(report, labels))
        if getattr(args, "pushgateway", None):
            _push(args.pushgateway, report, labels)
    except CouldNotRunError as exc:
        print(f"shipsure: {exc}", file=sys.stderr)
        return code or 3
    return code


def _write_textfile(path: str, text: str) -> None:
    try:
        # node-exporter reads *.prom files; the temp file beside it ends in .tmp, which the
        # collector ignores, and the rename makes the new file appear whole.
        write_atomic(path, text.encode(), mode=0o644)
    except OSError as exc:
        raise CouldNotRunError(f"--textfile {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class _Gateway:
    url: str  # without user info
    shown: str  # for messages: the password replaced by ***
    username: str | None
    password: str | None


def _pushgateway_target(text: str) -> _Gateway:
    """The Pushgateway a `--pushgateway` URL names. `user:password@` in it is sent as HTTP
    basic auth (a Pushgateway behind a proxy with `basic_auth_users`) and never printed.
    Like prometheus-client, a URL without a scheme means http://.

    Raises UsageError for anything but an http(s) URL with a host.
    """
    raw = text if "://" in text else "http://" + text
    parts = urlsplit(raw)
    user, at_sign, host = parts.netloc.rpartition("@")
    name, colon, _ = user.partition(":")
    shown_netloc = f"{name}{':***' if colon else ''}@{host}" if at_sign else host
    shown = urlunsplit(parts._replace(netloc=shown_netloc))
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"--pushgateway {shown}: not an http:// or https:// URL with a host")
    return _Gateway(
        url=urlunsplit(parts._replace(netloc=host)),
        shown=shown,
        username=unquote(name) if at_sign else None,
        password=unquote(user.partition(":")[2]) if at_sign and colon else None,
    )


def _push(url: str, report: Report, labels: int) -> None:
    from prometheus_client import push_to_gateway
    from prometheus_client.exposition import basic_auth_handler, default_handler

    from shipsure.report.probe_metrics import collector_registry

    gateway = _pushgateway_target(url)

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        if gateway.username is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(
            url, method, timeout, headers, data, gateway.username, gateway.password
        )

    meta = report.meta.get("probe", {})
    try:
        push_to_gateway(
            gateway.url,
            job="shipsure_probe",
            registry=collector_registry(report, labels),
            grouping_key={"registry": str(meta.get("registry")), "shard": str(meta.get("shard"))},
            timeout=30,
            handler=handler,
        )
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CouldNotRunError(f"--pushgateway {gateway.shown}: {reason}") from None


def _refuse_a_repository(text: str) -> None:
    """`probe HOST/team/app` means one repository: say how to ask for that."""
    bare = text.split("://", 1)[-1].rstrip("/")
    host, slash, rest = bare.partition("/")
    # With an "@" anywhere, user-info may hide in it: resolve_endpoint refuses and masks.
    if slash and rest and "@" not in bare:
        repository = rest.split(":", 1)[0]
        raise UsageError(
            f"probe takes a registry, not {text!r}: to probe that repository, run "
            f"shipsure probe --repo '{repository}' {host}"
        )
