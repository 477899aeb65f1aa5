"""Reading never leaves the storage root: a symlink anywhere in the layout that resolves
outside it is a `link-outside-root` finding naming the link, nothing behind it is read or
trusted, and `--apply` plans nothing behind it. Links that stay inside keep working."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan import repair
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.findings import CHECK_ERROR
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate
from shipsure.storage import layout
from shipsure.storage.filesystem import FilesystemStorage
from shipsure.storage.interface import StorageLinkOutsideError

SPEC = SyntheticSpec(repositories=2, tags=2, platforms=2, layers=1, layer_size=256)
OPTIONS = ScanOptions(recheck_delay=0, workers=1)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStorage:
    return generate(tmp_path_factory.mktemp("pristine"), SPEC)


@pytest.fixture
def root(pristine: SyntheticStorage, tmp_path: Path) -> Path:
    copy = tmp_path / "storage"
    shutil.copytree(pristine.root, copy, symlinks=True)
    return copy


def layout_paths(tree: SyntheticStorage) -> dict[str, str]:
    """One storage path per kind of layout folder or file, all read by a scan."""
    repo = tree.repositories[0]
    t = tree.tag(repo, "v0")
    index, child = t.index, t.children[0]
    layer = child.layers[-1]
    rdir = layout.repository_dir(repo)
    return {
        "repository": rdir,
        "_manifests": f"{rdir}/_manifests",
        "revisions": f"{rdir}/_manifests/revisions",
        "revision-folder": layout.revision_link(repo, index).rpartition("/")[0],
        "revision-link": layout.revision_link(repo, index),
        "tags": layout.tags_dir(repo),
        "tag": layout.tag_dir(repo, "v0"),
        "current": layout.tag_current_link(repo, "v0").rpartition("/")[0],
        "tag-link": layout.tag_current_link(repo, "v0"),
        "_layers": f"{rdir}/_layers",
        "layer-link": layout.layer_link(repo, layer),
        "blobs": layout.BLOBS,
        "blob-prefix": layout.blob_data(layer).rsplit("/", 2)[0],
        "blob-folder": layout.blob_data(layer).rpartition("/")[0],
        "blob-data": layout.blob_data(layer),
        "manifest-data": layout.blob_data(child.digest),
    }


def _move_out(root: Path, path: str, outside: Path) -> None:
    """Put `path`'s content outside the root, and a symlink to it in its place."""
    here = root / path
    shutil.move(here, outside)
    here.symlink_to(outside)


PATH_NAMES = [
    "repository",
    "_manifests",
    "revisions",
    "revision-folder",
    "revision-link",
    "tags",
    "tag",
    "current",
    "tag-link",
    "_layers",
    "layer-link",
    "blobs",
    "blob-prefix",
    "blob-folder",
    "blob-data",
    "manifest-data",
]


@pytest.mark.parametrize("name", PATH_NAMES)
def test_a_link_leaving_the_root_is_a_finding_and_never_read(
    pristine: SyntheticStorage, root: Path, tmp_path: Path, name: str
) -> None:
    path = layout_paths(pristine)[name]
    outside = tmp_path / "outside"
    _move_out(root, path, outside)
    report = scan(FilesystemStorage(root), OPTIONS)
    outside_findings = [f for f in report.findings if f.kind == k.LINK_OUTSIDE_ROOT]
    assert [f.details["storage_path"] for f in outside_findings] == [path]
    assert str(outside) in outside_findings[0].message
    # Nothing behind the link was read, so nothing is called missing or unreadable there,
    # and no repair is planned at or below it.
    assert {f.kind for f in report.findings} == {k.LINK_OUTSIDE_ROOT}
    for action in repair.plan_repairs(report.findings):
        assert not action.path.startswith(path)


@pytest.mark.parametrize("name", ["repository", "tag", "blob-folder", "blob-data", "tag-link"])
def test_a_link_staying_inside_the_root_keeps_working(
    pristine: SyntheticStorage, root: Path, name: str
) -> None:
    path = layout_paths(pristine)[name]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (root / path).rename(elsewhere / "moved")
    (root / path).symlink_to(elsewhere / "moved")
    report = scan(FilesystemStorage(root), OPTIONS)
    kinds = {f.kind for f in report.findings}
    assert k.LINK_OUTSIDE_ROOT not in kinds
    if name == "repository":  # discovery never follows folder links (loops): said so
        assert kinds == {CHECK_ERROR}
    else:
        assert kinds <= {k.BLOB_UNREFERENCED}, report.findings


def test_old_upload_behind_a_link_is_outside_root_and_never_removed(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    (outside / "precious" / "startedat").write_text("2020-01-01T00:00:00Z")
    other = root / layout.repository_dir("other")
    (other / "_manifests").mkdir(parents=True)
    (other / "_uploads").symlink_to(outside)
    report = scan(FilesystemStorage(root), OPTIONS)
    link = f"{layout.repository_dir('other')}/_uploads"
    assert [(f.kind, f.details["storage_path"]) for f in report.findings] == [
        (k.LINK_OUTSIDE_ROOT, link)
    ]
    assert repair.plan_repairs(report.findings) == []
    assert (outside / "precious" / "startedat").exists()


def test_the_storage_refuses_every_read_through_a_link_leaving_the_root(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "file").write_bytes(b"secret")
    (root / "out").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "sub" / "file")
    storage = FilesystemStorage(root)
    for call in (
        lambda: storage.list_dir("out/sub"),
        lambda: storage.read("out/sub/file", 100),
        lambda: storage.read("file-link", 100),
        lambda: storage.stat("out/sub/file"),
        lambda: storage.stat("file-link"),
        lambda: storage.hash_file("file-link", "sha256"),
        lambda: storage.changed_at("out/sub/file"),
    ):
        with pytest.raises(StorageLinkOutsideError) as caught:
            call()
        assert caught.value.link in ("out", "file-link")
    got = storage.read_many("out", ["sub"], "file", 100)
    assert isinstance(got[0], StorageLinkOutsideError)
    (root / "dir").mkdir()
    (root / "dir" / "x").mkdir()
    (root / "dir" / "x" / "link").symlink_to(outside / "sub" / "file")
    got = storage.read_many("dir", ["x"], "link", 100)
    assert isinstance(got[0], StorageLinkOutsideError)
