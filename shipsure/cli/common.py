"""Options and output shared by commands: --format, --fail-on, progress on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from shipsure.findings import Report, Severity
from shipsure.report import OutputFormat, render


def add_output_options(
    parser: argparse.ArgumentParser,
    formats: tuple[OutputFormat, ...] = tuple(OutputFormat),
) -> None:
    parser.add_argument(
        "--format",
        choices=[f.value for f in formats],
        default=OutputFormat.TEXT.value,
        help="output format (default: text)",
    )
    parser.add_argument(
        "--fail-on",
        type=_severity,
        default=Severity.WARNING,
        metavar="SEVERITY",
        help="exit 1 when a finding reaches this severity: info, warning, error, critical "
        "(default: warning)",
    )


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
            self.stream.write(f"\r{self.label}: {text}\x1b[K")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
