"""Numeric options: a value no clock, socket or sleep can hold is a usage error (exit 2)
naming the option, never a traceback mid-run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipsure.cli.common import number

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["1e12", "1e300", "9999999999"])
def test_a_number_too_large_for_any_clock_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="at most"):
        number(above=True)(text)


@pytest.mark.parametrize("text", ["1e-300", "1e-9"])
def test_a_non_zero_number_too_small_to_invert_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="0 or at least"):
        number()(text)


def test_ordinary_values_still_pass() -> None:
    assert number()("0") == 0
    assert number(above=True)("0.5") == 0.5
    assert number()("86400") == 86400


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--timeout", "1e12", "127.0.0.1:1/app:1"],
        ["probe", "--rate", "1e-300", "127.0.0.1:1"],
        ["serve", "--probe-interval", "1e300", "127.0.0.1:1"],
        ["serve", "--index-debounce", "1e300", "127.0.0.1:1"],
        ["serve", "--probe-rate", "1e-300", "127.0.0.1:1"],
    ],
)
def test_out_of_range_numbers_exit_2_before_any_request(argv: list[str], tmp_path: Path) -> None:
    extra = ["--listen", "127.0.0.1:0", "--state", str(tmp_path / "s.sqlite")]
    command = [sys.executable, "-m", "shipsure", *argv, *(extra if argv[0] == "serve" else [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[1]} {argv[2]} was taken: the command kept running")
    assert done.returncode == 2, done.stderr
    assert argv[1] in done.stderr and "Traceback" not in done.stderr
