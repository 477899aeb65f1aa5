"""Lock backends under test: a file directory, and real servers started once per session.

Only the servers a selected test needs are started (`-k file` starts none).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipsure.stacks.locks.file import FileLockBackend

from .harness import FakeClock, Harness

BACKENDS = ["file"]


@pytest.fixture
def file_harness(tmp_path: Path) -> Harness:
    clock = FakeClock()
    return Harness("file", lambda: FileLockBackend(tmp_path / "locks", clock=clock), clock, 0.5)


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    made: Harness = request.getfixturevalue(f"{request.param}_harness")
    try:
        yield made
    finally:
        made.close_all()
