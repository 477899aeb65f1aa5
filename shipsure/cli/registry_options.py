"""Registry connection options shared by every command that talks to a registry, and the
walk options the commands that walk images share."""

from __future__ import annotations

import argparse
import sys

from shipsure.cli.common import number, whole_number
from shipsure.errors import UsageError
from shipsure.registry import (
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    MAX_CONCURRENCY,
    HttpRegistry,
    open_registry,
)
from shipsure.registry.credentials import ENV_PASSWORD, ENV_USERNAME, Credentials, provider_for

CREDENTIALS_HELP = f"""\
Credentials, first found wins (docker's order): --username with --password-stdin;
{ENV_USERNAME} and {ENV_PASSWORD}; docker's config.json ($DOCKER_CONFIG or ~/.docker:
credHelpers, credsStore, auths); else anonymous. Loopback hosts (localhost, 127.0.0.0/8,
::1) are spoken to over plain HTTP; others need --insecure for that."""

# The password is read once per run, however many registries the command opens.
_PASSWORD_ATTRIBUTE = "_registry_password"


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry connection", description=CREDENTIALS_HELP)
    group.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain HTTP and do not verify TLS certificates",
    )
    group.add_argument(
        "--ca-file",
        metavar="PEM",
        help="verify TLS with these CA certificates instead of the system's",
    )
    group.add_argument("--username", metavar="NAME", help="registry user name")
    group.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (or token) for --username from standard input",
    )
    group.add_argument(
        "--timeout",
        type=number(above=True),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="bound each whole request (connect, headers, body; plus 1 s per MiB of body "
        f"received) by this many seconds; what runs out is a check-error (default: "
        f"{DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--concurrency",
        type=whole_number(1, MAX_CONCURRENCY),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once per registry (default: {DEFAULT_CONCURRENCY})",
    )


def add_referrers_option(parser: argparse.ArgumentParser) -> None:
    """`--no-referrers`, for the commands that walk images as a pull would."""
    parser.add_argument(
        "--no-referrers",
        dest="referrers",
        action="store_false",
        help="do not look up referrers (signatures, SBOMs, attestations)",
    )


def add_probe_options(parser: argparse.ArgumentParser, *, scheduled: bool = False) -> None:
    """How hard the whole-registry probe works: `--deep-sample` and `--rate` for `probe`;
    serve takes them for its `scheduled` probe as `--probe-deep-sample`, `--probe-rate`."""
    prefix, per = ("--probe-", "probe") if scheduled else ("--", "run")
    parser.add_argument(
        f"{prefix}deep-sample",
        # serve's config file may say 0 (none); probe's flag is given only to sample.
        type=number(above=not scheduled, maximum=100),
        default=0.0,
        metavar="PERCENT",
        help=f"re-hash this share of blobs per {per}, rotating so that every blob is "
        "re-hashed within ceil(100/PERCENT) runs"
        + ("" if scheduled else " (counted in --state; without it, by the hour)"),
    )
    parser.add_argument(
        f"{prefix}rate",
        type=number(),
        default=0.0,
        metavar="PER_SECOND",
        help=f"at most this many {'probe ' if scheduled else ''}requests per second "
        "(0, the default: no limit; see --concurrency)",
    )


def registry_from_args(args: argparse.Namespace, host: str) -> HttpRegistry:
    """Open `host` with the options of `add_registry_options`; close it when done."""
    explicit = _explicit_credentials(args)
    return open_registry(
        host,
        insecure=args.insecure,
        ca_file=args.ca_file,
        credentials=provider_for(host, explicit=explicit),
        timeout=args.timeout,
        concurrency=args.concurrency,
    )


def _explicit_credentials(args: argparse.Namespace) -> Credentials | None:
    if args.username is None and not args.password_stdin:
        return None
    if args.username is None:
        raise UsageError("--password-stdin needs --username")
    if not args.password_stdin:
        raise UsageError("--username needs --password-stdin (passwords are never flags)")
    password = getattr(args, _PASSWORD_ATTRIBUTE, None)
    if password is None:
        # docker login --password-stdin: the whole input, without the trailing newline.
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: standard input is empty")
        setattr(args, _PASSWORD_ATTRIBUTE, password)
    return Credentials(args.username, password, source="--username")
