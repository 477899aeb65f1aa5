"""Entry point: parse arguments, run one command, map every outcome to an exit code.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`. Errors are
caught once here and printed as one line on stderr; there are no tracebacks for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, TextIO, cast

from shipsure import __version__
from shipsure.errors import ShipsureError
from shipsure.findings import ExitCode

# httpx's package imports its optional command-line client (click, pygments) whenever click
# is installed, which many environments have; shipsure never uses it and it cost ~0.1 s of
# every run here, a fifth of a post-push `verify`. A None entry makes that import fail fast,
# and httpx falls back to its stub (it catches the ImportError itself).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# Command name -> module under shipsure.cli, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "verify": "verify",
    "probe": "probe",
    "serve": "serve",
    "scan": "scan",
    "gc-check": "gc_check",
    "gc": "gc",
    "retain": "retain",
    "restore": "restore",
    "report": "report_merge",
    "lint": "lint",
    "stacks": "stacks",
}

EPILOG = """\
exit codes:
  0  clean: nothing found
  1  findings at or above --fail-on
  2  usage error or malformed input (reference, manifest, file)
  3  could not run or could not check (unreachable, auth refused, unreadable storage)

Run `shipsure COMMAND --help` for each command's options and examples."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its one-line style."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def _commands(only: str | None) -> list[ModuleType]:
    names = [COMMANDS[only]] if only in COMMANDS else list(COMMANDS.values())
    return [importlib.import_module(f"shipsure.cli.{name}") for name in names]


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line, if any: only its module is imported, so a
    post-push `verify` does not pay for the linters' or the stacks runner's imports."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shipsure",
        description="Keep a self-hosted container platform honest: verify pushed images end "
        "to end, check registry storage, and run infrastructure stacks safely.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shipsure {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _commands(only):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(arguments))
    args = parser.parse_args(arguments)
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _ReaderMayLeave(stdout))
    try:
        return int(args.run(args))
    except ShipsureError as exc:
        from shipsure.report.terminal import one_line

        print(f"shipsure: {one_line(exc)}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("shipsure: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        sys.stdout = stdout


class _ReaderMayLeave:
    """stdout for a reader that may stop early (`shipsure verify ... | head -1`): once
    the pipe is broken, the rest of the output is dropped and the command runs to its
    end, so its exit code is still the verdict (a broken pipe used to end it with 0)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._break()

    def _break(self) -> None:
        self._broken = True
        # What is still buffered would fail again when the interpreter flushes stdout at
        # exit (turning the exit code into 120): point the descriptor at /dev/null.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (a test's capture): nothing is flushed at exit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
