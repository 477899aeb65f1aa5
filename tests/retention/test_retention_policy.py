"""Retention policies and the plan built on them: pure, no registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipsure.errors import BadInputError
from shipsure.retention.config import from_document, load, parse_age
from shipsure.retention.plan import DELETE_MANIFEST, DELETE_TAG, TagImage, plan_retention
from shipsure.retention.policy import (
    AllOf,
    AnyOf,
    Match,
    Newest,
    Semver,
    TagInfo,
    YoungerThan,
    referrer_subject,
    semver_key,
)

NOW = 1_000_000.0
DAY = 86400.0


def tags(*items: tuple[str, float | None]) -> list[TagInfo]:
    return [TagInfo(t, c) for t, c in items]


def test_newest_keeps_the_most_recent_and_undated() -> None:
    got = Newest(2).keep(tags(("a", 1), ("b", 3), ("c", 2), ("d", None)), NOW)
    assert got == {"b", "c", "d"}


def test_match_is_a_full_match() -> None:
    assert Match(re.compile("release-.*")).keep(
        tags(("release-1", 1), ("x-release-1", 1)), NOW
    ) == {"release-1"}


def test_younger_than() -> None:
    got = YoungerThan(2 * DAY).keep(tags(("new", NOW - DAY), ("old", NOW - 3 * DAY)), NOW)
    assert got == {"new"}


def test_semver_per_major_and_minor() -> None:
    t = tags(
        ("1.2.3", 1),
        ("1.2.10", 1),
        ("1.3.0-rc.1", 1),
        ("1.3.0", 1),
        ("2.0.0", 1),
        ("v2.1.0", 1),
        ("latest", 1),
        ("1.02.0", 1),
    )
    assert Semver("major").keep(t, NOW) == {"1.3.0", "v2.1.0"}
    assert Semver("minor").keep(t, NOW) == {"1.2.10", "1.3.0", "2.0.0", "v2.1.0"}
    assert semver_key("1.0.0-alpha") < semver_key("1.0.0-alpha.1") < semver_key("1.0.0")  # type: ignore[operator]


def test_any_and_all() -> None:
    t = tags(("release-1", NOW - 10 * DAY), ("release-2", NOW), ("dev", NOW))
    young = YoungerThan(DAY)
    rel = Match(re.compile("release-.*"))
    assert AnyOf((young, rel)).keep(t, NOW) == {"release-1", "release-2", "dev"}
    assert AllOf((young, rel)).keep(t, NOW) == {"release-2"}


def test_referrer_tags() -> None:
    hex_ = "a" * 64
    assert referrer_subject(f"sha256-{hex_}") == f"sha256:{hex_}"
    assert referrer_subject(f"sha256-{hex_}.sig") == f"sha256:{hex_}"
    assert referrer_subject("sha256-abc") is None


def _img(
    tag: str,
    digest: str,
    created: float,
    manifests: set[str] | None = None,
    blobs: dict[str, int] | None = None,
    repo: str = "app",
) -> TagImage:
    return TagImage(repo, tag, digest, created, frozenset(manifests or {digest}), blobs or {})


POLICY = from_document(
    {"policies": [{"repositories": "app", "keep": {"newest": 1}, "protect": ["stable"]}]}
)


def test_plan_deletes_manifests_only_when_nothing_kept_needs_them() -> None:
    d = "sha256:" + "1" * 64
    child = "sha256:" + "2" * 64
    index = "sha256:" + "3" * 64
    images = [
        _img("v3", index, 3, {index, child}, {"sha256:" + "9" * 64: 100}),
        _img("old-child", child, 1, blobs={"sha256:" + "8" * 64: 50}),  # a kept index's child
        _img("v1", d, 1, blobs={"sha256:" + "7" * 64: 70}),
        _img("v1-alias", d, 1),
        _img("stable", "sha256:" + "4" * 64, 0),
        _img(f"sha256-{index[7:]}", "sha256:" + "5" * 64, 0),  # referrers of the kept index
        _img(f"sha256-{d[7:]}", "sha256:" + "6" * 64, 0),  # referrers of a deleted image
    ]
    made = plan_retention(images, POLICY, NOW, delete_manifests=True)
    kept = {d.tag for d in made.decisions if d.keep}
    assert kept == {"v3", "stable", f"sha256-{index[7:]}"}
    ops = {(a.op, a.target) for a in made.plan.actions}
    assert (DELETE_TAG, "app:old-child") in ops
    assert (DELETE_MANIFEST, f"app@{d}") in ops
    assert (DELETE_MANIFEST, "app@sha256:" + "6" * 64) in ops
    assert not any(a.target == f"app@{child}" for a in made.plan.actions)
    assert made.bytes == 50 + 70
    on_storage = plan_retention(images, POLICY, NOW, delete_manifests=False)
    assert {a.op for a in on_storage.plan.actions} == {DELETE_TAG}


def test_unmatched_repositories_keep_everything() -> None:
    made = plan_retention(
        [_img("x", "sha256:" + "1" * 64, 0, repo="other")], POLICY, NOW, delete_manifests=True
    )
    assert made.plan.actions == [] and made.decisions[0].keep


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("policies: []", "policies"),
        ("policies:\n  - keep: {newest: -1}", "policies[0].keep.newest"),
        ("policies:\n  - keep: {bogus: 1}", "policies[0].keep"),
        (
            "policies:\n  - keep: {any: [{younger_than: 3 days}]}",
            "policies[0].keep.any[0].younger_than",
        ),
        ("policies:\n  - keep: {match: '('}", "policies[0].keep.match"),
        ("policies: [", "line"),
        ("nope: 1", "(top level)"),
    ],
)
def test_policy_file_errors_name_the_place(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(BadInputError) as caught:
        load(path)
    assert str(path) in str(caught.value) and where in str(caught.value)


def test_ages() -> None:
    assert parse_age("90m") == 5400 and parse_age("2w") == 14 * DAY
