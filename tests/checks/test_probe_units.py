"""Pure parts of the probe: tag and repository selection, the --deep-sample rotation, the
shard split, the state file's bad inputs, metrics outputs that fail."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from shipsure.checks.probe import (
    ProbeOptions,
    deep_sample_picker,
    deep_sample_rotation,
    natural_key,
    repository_selected,
    select_tags,
)
from shipsure.checks.scan.shard import Shard
from shipsure.cli.main import main
from shipsure.model import Digest


def test_tags_by_regex_then_the_greatest_in_version_order() -> None:
    tags = ["latest", "1.9", "1.10", "1.2", "v2-rc1", "sha256-abc", "1.10.1"]
    options = ProbeOptions(tag_pattern=re.compile(r"^\d"), max_tags=2)
    assert select_tags(tags, options) == ["1.10", "1.10.1"]
    assert sorted(["1.10", "1.9", "1.2"], key=natural_key) == ["1.2", "1.9", "1.10"]
    assert select_tags(tags, ProbeOptions()) == tags


def test_max_tags_takes_releases_before_names_and_signatures() -> None:
    # A signed image has one `sha256-<digest>.sig` tag per release: they, and `latest`, all
    # sorted above every number, so --max-tags took them instead of the newest releases.
    releases = [f"1.{i}.0" for i in range(30)]
    signatures = [f"sha256-{i:064x}.sig" for i in range(30)]
    tags = ["latest", "main", *signatures, *releases, "v2.0.0"]
    assert select_tags(tags, ProbeOptions(max_tags=3)) == ["1.28.0", "1.29.0", "v2.0.0"]
    # Then other names, signatures last.
    assert select_tags(tags, ProbeOptions(max_tags=33)) == ["latest", "main", *releases, "v2.0.0"]
    order = sorted(["latest", "sha256-" + "a" * 64 + ".sig", "1.0", "main"], key=natural_key)
    assert order == ["sha256-" + "a" * 64 + ".sig", "latest", "main", "1.0"]


def test_repositories_by_glob_and_shard() -> None:
    names = [f"team{i % 3}/app{i}" for i in range(60)]
    options = ProbeOptions(repositories=("team1/*",))
    assert [n for n in names if repository_selected(n, options)] == [
        n for n in names if n.startswith("team1/")
    ]
    owners = [
        [n for n in names if repository_selected(n, ProbeOptions(shard=Shard(i, 4)))]
        for i in range(4)
    ]
    assert sorted(n for owned in owners for n in owned) == sorted(names)  # one shard each
    assert all(owners)  # and the split is not degenerate
    again = [n for n in names if repository_selected(n, ProbeOptions(shard=Shard(2, 4)))]
    assert again == owners[2]  # deterministic


def test_deep_sample_rehashes_every_blob_within_the_rotation() -> None:
    digests = [Digest.of(str(i).encode()) for i in range(2000)]
    rotation = deep_sample_rotation(10)
    assert rotation == 10
    covered: set[Digest] = set()
    for run in range(rotation):
        pick = deep_sample_picker(10, run)
        assert pick is not None
        chosen = [d for d in digests if pick(d)]
        assert 100 < len(chosen) < 300  # about 10 % per run
        covered.update(chosen)
    assert covered == set(digests)
    assert deep_sample_picker(0, 3) is None


def test_a_state_file_that_is_not_one_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "state.json"
    bad.write_text("[1, 2]")
    assert main(["probe", "--state", str(bad), "127.0.0.1:1"]) == 2
    assert "state.json: not a probe state file" in capsys.readouterr().err
    assert main(["probe", "--tag", "(", "127.0.0.1:1"]) == 2
    assert "--tag" in capsys.readouterr().err


def test_an_unreachable_registry_is_could_not_check(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there: the registry API itself is unreachable.
    code = main(["probe", "--timeout", "2", "--format", "json", f"127.0.0.1:{port}"])
    assert code == 3
    assert '"state": "catalog-inaccessible"' in capsys.readouterr().out
