"""Benchmarks time shipsure as it runs once installed: byte-compiled.

A wheel install leaves every module compiled (`__pycache__`); a checkout run under
PYTHONDONTWRITEBYTECODE=1 (set on some CI images and on these machines) compiles every
module from source at each start instead, 30-40 ms of a 0.7 s scan that no installed
shipsure pays. Each benchmark compiles the package once before it measures.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import shipsure


def byte_compile() -> None:
    """Write the package's `__pycache__` files, as an install does (ignored by git)."""
    compileall.compile_dir(str(Path(shipsure.__file__).parent), quiet=1)
