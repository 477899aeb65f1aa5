"""`fileio.write_atomic` on targets that are not plain files: links are followed, devices,
FIFOs and folders refused (as root, a rename over /dev/full replaced the device)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipsure.fileio import write_atomic


def test_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "data" / "probe.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "probe.json"
    link.symlink_to(real)
    write_atomic(link, b"new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "metrics.prom"
    link.symlink_to(tmp_path / "sub" / "real.prom")
    write_atomic(link, b"x")
    assert link.is_symlink()
    assert (tmp_path / "sub" / "real.prom").read_bytes() == b"x"


def test_fifo_is_refused_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "out.prom"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        write_atomic(fifo, b"x")
    assert fifo.is_fifo()
    assert os.listdir(tmp_path) == ["out.prom"]


def test_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "full.prom"
    link.symlink_to("/dev/null")
    with pytest.raises(OSError, match="not a regular file"):
        write_atomic(link, b"x")
    assert Path("/dev/null").is_char_device()


def test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        write_atomic(tmp_path, b"x")
