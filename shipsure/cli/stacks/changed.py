"""`shipsure stacks changed`: the stacks a change touches, each with its reasons."""

from __future__ import annotations

import argparse
import json
import os
import sys

from shipsure.cli.stacks.common import detect_changes, workspace
from shipsure.findings import ExitCode
from shipsure.stacks.changed import ChangedStacks
from shipsure.stacks.discovery import display


def run_changed(args: argparse.Namespace) -> int:
    ws = workspace(args)
    result = detect_changes(ws, args, os.environ)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    elif args.format == "paths":
        sys.stdout.write("".join(f"{display(p)}\n" for p in result.paths))
    else:
        sys.stdout.write(render_changed(result))
    return int(ExitCode.CLEAN)


def render_changed(result: ChangedStacks) -> str:
    lines: list[str] = []
    for stack in result.stacks:
        lines.append(display(stack.path))
        lines += [f"  - {reason}" for reason in stack.reasons]
    for stack in result.deleted:
        lines.append(f"{display(stack.path)} (deleted)")
        lines += [f"  - {reason}" for reason in stack.reasons]
    scope = "all stacks" if result.all else f"{len(result.stacks)} stack(s)"
    lines.append(f"{scope} changed; baseline: {result.baseline.get('description', '?')}")
    return "\n".join(lines) + "\n"
