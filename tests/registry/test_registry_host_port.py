"""A registry host whose port no socket can use (distribution's grammar takes any digits)
is a usage error naming it, from every command that opens a registry, before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipsure.cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "127.0.0.1:99999/app:1"],
        ["verify", "registry.example.com:0123456/app:1"],
        ["probe", "127.0.0.1:70000"],
        ["serve", "127.0.0.1:99999"],
    ],
)
def test_a_port_out_of_range_exits_2_naming_the_host(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--listen", "127.0.0.1:0", "--state", str(tmp_path / "s.sqlite")]
    assert main([*argv, *(extra if argv[0] == "serve" else [])]) == 2
    err = capsys.readouterr().err
    assert argv[1].split("/")[0] in err and "Traceback" not in err
