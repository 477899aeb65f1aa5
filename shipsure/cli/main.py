"""Entry point: parse arguments, run one command, map every outcome to an exit code.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`. Errors are
caught once here and printed as one line on stderr; there are no tracebacks for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from shipsure import __version__
from shipsure.errors import ShipsureError
from shipsure.findings import ExitCode

# Command modules under shipsure.cli, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("verify", "lint", "stacks", "scan", "report_merge")

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


def _commands() -> list[ModuleType]:
    return [importlib.import_module(f"shipsure.cli.{name}") for name in COMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
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
    for module in _commands():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ShipsureError as exc:
        print(f"shipsure: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("shipsure: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
