"""Options and output shared by commands: --format, --fail-on, --journal/--state-dir,
progress on stderr."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from shipsure import plan
from shipsure.errors import UsageError
from shipsure.findings import Report, Severity
from shipsure.model import Reference
from shipsure.report import OutputFormat, render

if TYPE_CHECKING:
    from shipsure.checks.scan.shard import Shard

SHARED_FORMATS = tuple(fmt.value for fmt in OutputFormat)


def image_reference(text: str) -> Reference:
    """An image reference as docker reads it, except `HOST:PORT` alone (`localhost:5000`,
    `127.0.0.1:5000`, `registry.example.com:5000`): docker's grammar makes that Docker
    Hub's `library/<host>` at tag `<port>`, which no user means by it."""
    if "/" not in text and text.startswith("[") and "]:" in text:
        _registry_alone(text)  # an IPv6 host and port: no repository name at all
    ref = Reference.parse(text)
    name = ref.repository.removeprefix("library/")
    looks_like_host = name == "localhost" or "." in name
    if (
        ref.registry == "docker.io"
        and "/" not in text
        and ref.digest is None
        and (ref.tag or "").isdigit()
        and looks_like_host
    ):
        _registry_alone(text, f" (docker would read Docker Hub's library/{name}:{ref.tag})")
    return ref


def _registry_alone(text: str, reading: str = "") -> None:
    raise UsageError(
        f"{text!r} names a registry, not an image{reading}: write {text}/REPOSITORY[:TAG], "
        f"or check the whole registry with `shipsure probe {text}`"
    )


def add_output_options(
    parser: argparse.ArgumentParser, formats: tuple[str, ...] = SHARED_FORMATS
) -> None:
    """--format (one of `formats`, text first) and --fail-on. A command with renderers of
    its own (lint's SARIF) names its formats; the others get every shared renderer."""
    parser.add_argument(
        "--format",
        choices=list(formats),
        default=formats[0],
        help=f"output format: {', '.join(formats)} (default: {formats[0]})",
    )
    parser.add_argument(
        "--fail-on",
        type=_severity,
        default=Severity.WARNING,
        metavar="SEVERITY",
        help="exit 1 when a finding reaches this severity: info, warning, error, critical "
        "(default: warning)",
    )


STORAGE_ROOT_HELP = (
    "the registry's rootdirectory (holds docker/registry/v2), or s3://BUCKET[/PREFIX] "
    "(the s3 driver's bucket and rootdirectory)"
)


def add_s3_options(parser: argparse._ActionsContainer) -> None:
    """--s3-endpoint and --s3-region, for an s3:// storage root (scan, gc-check, gc)."""
    parser.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="S3 endpoint URL (S3-compatible); credentials come from the AWS environment "
        "and files, as boto3 reads them (the s3 extra)",
    )
    parser.add_argument("--s3-region", metavar="REGION", help="S3 region (default: from AWS env)")


def add_journal_options(parser: argparse._ActionsContainer, name: str) -> None:
    """--journal FILE and --state-dir DIR: where --apply journals what it does (default:
    STATE_DIR/`name`; `shipsure.plan.state_dir` says where STATE_DIR is). Never the current
    directory unless given."""
    parser.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help=f"with --apply: append what is done to FILE (default: STATE_DIR/{name})",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="shipsure's state folder (default: $SHIPSURE_STATE_DIR, else "
        "$XDG_STATE_HOME/shipsure, else ~/.local/state/shipsure)",
    )


def journal_path(args: argparse.Namespace, name: str) -> Path:
    """The journal chosen by `add_journal_options`' options."""
    if args.journal is not None:
        return Path(args.journal)
    return (args.state_dir or plan.state_dir()) / name


# Every numeric option is a count of seconds, hours, days, percent or requests per second;
# a clock, socket timeout or sleep holds at most about 9.2e9 seconds (int64 nanoseconds),
# and a rate is turned into a pause of 1/rate seconds. These bounds keep both well inside.
NUMBER_MAX = 1e9
NUMBER_SMALLEST = 1e-6


def number(
    *, minimum: float = 0.0, above: bool = False, maximum: float | None = None
) -> Callable[[str], float]:
    """An argparse type for a finite number of at least (or, with `above`, above)
    `minimum` and at most `maximum` (at most NUMBER_MAX whatever `maximum` says), and
    either 0 or at least NUMBER_SMALLEST, with a message naming the text given."""
    ceiling = min(maximum, NUMBER_MAX) if maximum is not None else NUMBER_MAX
    bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
    bound += f" and at most {ceiling:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= minimum if above else value < minimum
        if value != value or too_low or value > ceiling:
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        if value != 0 and abs(value) < NUMBER_SMALLEST:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be 0 or at least {NUMBER_SMALLEST:g} (too small to act on)"
            )
        return value

    return parse


def shard(text: str) -> Shard:
    """An argparse type for `--shard I/N` (probe, scan)."""
    # Imported here: the other commands do not load the scan package.
    from shipsure.checks.scan.shard import Shard

    try:
        return Shard.parse(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type for a whole number from `minimum` to `maximum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {minimum}..{maximum}")
        return value

    return parse


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def emit(report: Report, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the report in the chosen format and return the exit code it implies."""
    stream = out or sys.stdout
    stream.write(render(report, OutputFormat(args.format)))
    stream.flush()
    return int(report.exit_code(args.fail_on))


class Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label

    def update(self, text: str) -> None:
        if self.enabled:
            from shipsure.report.terminal import printable

            # One line that fits: a longer one wraps, and `\r` then rewrites only its last
            # row, leaving the rest on screen. Names are escaped (a file name with ESC).
            width = shutil.get_terminal_size().columns - 1
            line = f"{self.label}: {printable(text)}"
            if len(line) > width > 1:
                line = line[: width - 1] + "…"
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
