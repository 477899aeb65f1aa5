"""`serve --config FILE`: a flag given on the command line wins over the file, also when
the flag's value happens to be the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipsure.cli.main import build_parser, main
from shipsure.cli.serve import apply_config
from shipsure.errors import BadInputError


def test_a_flag_given_with_its_default_value_still_wins(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(
        "registry: from-config:5000\nprobe-interval: 900\npush-check: head\n"
        "log-format: json\ntimeout: 5\n"
    )
    argv = ["serve", "--config", str(config), "--probe-interval", "3600", "--push-check"]
    argv += ["deep", "--log-format", "text", "--timeout", "30", "cli:5000"]
    args = build_parser("serve").parse_args(argv)
    apply_config(args, args.serve_parser)
    assert (args.registry, args.probe_interval, args.push_check) == ("cli:5000", 3600.0, "deep")
    assert (args.log_format, args.timeout) == ("text", 30.0)


def test_the_file_still_fills_what_the_command_line_left_out(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("registry: from-config:5000\nprobe-interval: 900\nno-referrers: true\n")
    args = build_parser("serve").parse_args(["serve", "--config", str(config)])
    apply_config(args, args.serve_parser)
    assert (args.registry, args.probe_interval, args.referrers) == ("from-config:5000", 900, False)


def test_a_config_file_over_the_limit_is_refused_not_cut(tmp_path: Path) -> None:
    """Cut at 1 MiB, a file could parse as valid YAML without its last options."""
    config = tmp_path / "serve.yaml"
    config.write_text("# " + "x" * (1024 * 1024) + "\nprobe-interval: 900\n")
    args = build_parser("serve").parse_args(["serve", "--config", str(config), "r:5000"])
    with pytest.raises(BadInputError, match="over"):
        apply_config(args, args.serve_parser)


def test_a_config_file_nested_too_deep_is_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("listen: " + "[" * 50_000 + "\n")
    args = build_parser("serve").parse_args(["serve", "--config", str(config), "r:5000"])
    with pytest.raises(BadInputError, match="not YAML"):
        apply_config(args, args.serve_parser)


def test_a_state_path_that_is_a_folder_or_another_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 (bad option), one line: it was 3 ("cannot open: unable to open database
    file"), as if the machine were at fault."""
    other = tmp_path / "probe.json"
    other.write_text('{"findings": []}')
    for state, says in ((tmp_path, "a folder"), (other, "not a serve state file")):
        argv = ["serve", "--listen", "127.0.0.1:0", "--state", str(state), "127.0.0.1:1"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
