"""A reader that stops early (`shipsure verify ... | head -1`) must not turn the verdict
into 0: the exit code is the report's, whether or not its text could all be written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_closed_stdout_keeps_the_exit_code_of_the_report() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Port 1 refuses at once: a check-error, exit 3, after the retries' short backoff.
    command = [sys.executable, "-m", "shipsure", "verify", "--format", "json"]
    process = subprocess.Popen(
        [*command, "127.0.0.1:1/app:1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything is written
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 3, err
    assert "Traceback" not in err
