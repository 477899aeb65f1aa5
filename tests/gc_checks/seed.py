"""Seeded storage for the GC tests: the synthetic writer's registry, extra images written the
way a push leaves them (foreign layers, referrers, nested indexes, Docker lists), every
fault of registry-facts §4, and the real collectors run on copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipsure import mediatypes as mt
from shipsure.gc.collect import Prediction
from shipsure.sandbox import faults
from shipsure.sandbox.registry import REGISTRY_BINARY
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate

V3_BINARY = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "registry"
V2 = "docker/registry/v2"


def binary(version: int) -> Path:
    return REGISTRY_BINARY if version == 2 else V3_BINARY


def available(version: int) -> bool:
    path = binary(version)
    return path.is_file() and os.access(path, os.X_OK)


# --- writing like a push ------------------------------------------------------------------


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def put_blob(root: Path, repo: str, data: bytes, *, link: bool = True) -> str:
    hex_ = hashlib.sha256(data).hexdigest()
    _write(root, f"{V2}/blobs/sha256/{hex_[:2]}/{hex_}/data", data)
    if link:
        _write(
            root, f"{V2}/repositories/{repo}/_layers/sha256/{hex_}/link", b"sha256:" + hex_.encode()
        )
    return f"sha256:{hex_}"


def put_manifest(root: Path, repo: str, doc: dict[str, object], tag: str | None = None) -> str:
    data = json.dumps(doc, separators=(",", ":")).encode()
    hex_ = hashlib.sha256(data).hexdigest()
    digest = f"sha256:{hex_}"
    _write(root, f"{V2}/blobs/sha256/{hex_[:2]}/{hex_}/data", data)
    _write(
        root, f"{V2}/repositories/{repo}/_manifests/revisions/sha256/{hex_}/link", digest.encode()
    )
    if tag is not None:
        tag_to(root, repo, tag, digest)
    return digest


def tag_to(root: Path, repo: str, tag: str, digest: str) -> None:
    base = f"{V2}/repositories/{repo}/_manifests/tags/{tag}"
    _write(root, f"{base}/current/link", digest.encode())
    _write(root, f"{base}/index/sha256/{digest[7:]}/link", digest.encode())


def descriptor(media_type: str, digest: str, size: int, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(
    root: Path,
    repo: str,
    label: str,
    *,
    docker: bool = False,
    foreign: bytes | None = None,
    tag: str | None = None,
) -> tuple[str, int]:
    """A single-platform image: config + one layer (+ a foreign layer). (digest, size)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()
    layer = f"layer {label}".encode() * 10
    c = put_blob(root, repo, config)
    ld = put_blob(root, repo, layer)
    layers = [descriptor(mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP, ld, len(layer))]
    if foreign is not None:
        fd = put_blob(root, repo, foreign)
        layers.append(
            descriptor(
                mt.DOCKER_FOREIGN_LAYER, fd, len(foreign), urls=["https://example.com/layer"]
            )
        )
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": descriptor(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, c, len(config)),
        "layers": layers,
    }
    d = put_manifest(root, repo, doc, tag)
    return d, len(json.dumps(doc, separators=(",", ":")))


def index(
    root: Path,
    repo: str,
    children: list[tuple[str, int, str]],
    *,
    tag: str | None = None,
    docker: bool = False,
) -> tuple[str, int]:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX,
        "manifests": [
            descriptor(mtype, d, size, platform={"os": "linux", "architecture": "amd64"})
            for d, size, mtype in children
        ],
    }
    d = put_manifest(root, repo, doc, tag)
    return d, len(json.dumps(doc, separators=(",", ":")))


def signature(root: Path, repo: str, subject: tuple[str, int, str]) -> str:
    """An untagged referrer (cosign-style signature) whose subject is given."""
    payload = put_blob(root, repo, b'{"critical":{}}')
    empty = put_blob(root, repo, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": descriptor("application/vnd.oci.empty.v1+json", empty, 2),
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload, 15)],
        "subject": descriptor(subject[2], subject[0], subject[1]),
    }
    return put_manifest(root, repo, doc)


# --- scenarios -----------------------------------------------------------------------------


@dataclass
class Seeded:
    root: Path
    synthetic: SyntheticStorage


def base(root: Path) -> Seeded:
    """Two multi-arch repositories from the synthetic writer plus `extra/app`: a Docker
    manifest list, a foreign layer whose bytes were pushed, a nested index, a signature
    referrer of a tagged index, and an untagged old image."""
    s = generate(
        root, SyntheticSpec(repositories=2, tags=2, platforms=2, layers=1, layer_size=256, teams=0)
    )
    repo = "extra/app"
    a = image(root, repo, "docker-a", docker=True, foreign=b"foreign bytes pushed")
    b = image(root, repo, "docker-b", docker=True)
    lst = index(
        root,
        repo,
        [(a[0], a[1], mt.DOCKER_MANIFEST), (b[0], b[1], mt.DOCKER_MANIFEST)],
        tag="list",
        docker=True,
    )
    c = image(root, repo, "nested-child")
    inner = index(root, repo, [(c[0], c[1], mt.OCI_MANIFEST)])
    outer = index(root, repo, [(inner[0], inner[1], mt.OCI_INDEX)], tag="nested")
    signature(root, repo, (outer[0], outer[1], mt.OCI_INDEX))
    signature(root, repo, (lst[0], lst[1], mt.DOCKER_MANIFEST_LIST))
    image(root, repo, "old-untagged")
    return Seeded(root, s)


def _first(s: Seeded) -> tuple[str, str]:
    t = s.synthetic.tags[0]
    return t.repository, t.tag


def _write_link(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _retag_old(s: Seeded) -> str:
    """Point the first tag at the second tag's index; returns the now-untagged index."""
    t0, t1 = s.synthetic.tags[0], s.synthetic.tags[1]
    tag_to(s.root, t0.repository, t0.tag, t1.index)
    return t0.index


def _fault_table() -> dict[str, Callable[[Seeded], object]]:
    def child(s: Seeded) -> tuple[str, str]:
        t = s.synthetic.tags[0]
        return t.repository, t.children[0].digest

    return {
        "clean": lambda s: None,
        "tag-folders-deleted": lambda s: shutil.rmtree(faults.tag_folder(s.root, *_first(s))),
        "layer-data-removed": lambda s: faults.remove_blob_data(
            s.root, s.synthetic.tags[0].children[0].layers[-1]
        ),
        "layer-link-removed": lambda s: faults.remove_layer_link(
            s.root, s.synthetic.tags[0].repository, s.synthetic.tags[0].children[0].layers[-1]
        ),
        "child-data-removed": lambda s: faults.remove_manifest_data(s.root, child(s)[1]),
        "child-revision-removed": lambda s: faults.remove_revision_link(s.root, *child(s)),
        "tag-dangles": lambda s: faults.dangle_tag(s.root, *_first(s)),
        "config-data-removed": lambda s: faults.remove_blob_data(
            s.root, s.synthetic.tags[0].children[0].config
        ),
        "layer-corrupted": lambda s: faults.corrupt_blob(
            s.root, s.synthetic.tags[0].children[0].layers[-1]
        ),
        "child-corrupted": lambda s: faults.corrupt_manifest(s.root, child(s)[1]),
        "child-data-is-folder": lambda s: _data_to_folder(s.root, child(s)[1]),
        "old-revision-data-missing": lambda s: faults.remove_untagged_revision_data(
            s.root, s.synthetic.tags[0].repository, _retag_old(s)
        ),
        "stale-upload": lambda s: faults.plant_stale_upload(s.root, s.synthetic.tags[0].repository),
        "revision-link-newline": lambda s: _write_link(
            faults.revision_link_path(s.root, *child(s)), child(s)[1].encode() + b"\n"
        ),
        "tag-link-newline": lambda s: _write_link(
            faults.tag_current_link_path(s.root, *_first(s)),
            s.synthetic.tags[0].index.encode() + b"\n",
        ),
        "layer-link-malformed": lambda s: _write_link(
            faults.layer_link_path(
                s.root, s.synthetic.tags[0].repository, s.synthetic.tags[0].children[0].config
            ),
            b"garbage",
        ),
        "tags-folder-gone": lambda s: shutil.rmtree(
            faults.tags_folder(s.root, s.synthetic.tags[0].repository)
        ),
        "layers-folder-gone": lambda s: shutil.rmtree(
            faults.repository_path(s.root, s.synthetic.tags[0].repository) / "_layers"
        ),
        "cross-repository-child": _cross_repository_child,
        "invalid-repository-name": lambda s: shutil.copytree(
            faults.repository_path(s.root, s.synthetic.tags[0].repository),
            faults.repository_path(s.root, "Upper/Case"),
        ),
    }


def _data_to_folder(root: Path, digest: str) -> None:
    """A folder where a manifest's `data` file belongs: the collectors take it as missing."""
    data = faults.blob_data_path(root, digest)
    data.unlink()
    data.mkdir()


def _cross_repository_child(s: Seeded) -> None:
    """The same image in a repository walked first (`aaa/copy`) whose copy of one child has
    no revision link: distribution v3 marks that child there without following it, and does
    not follow it again in the original repository, so under -m its blobs are swept."""
    repo = s.synthetic.tags[0].repository
    shutil.copytree(
        faults.repository_path(s.root, repo), faults.repository_path(s.root, "aaa/copy")
    )
    faults.remove_revision_link(s.root, "aaa/copy", s.synthetic.tags[0].children[0].digest)


FAULTS = _fault_table()


def seed(root: Path, fault: str) -> Seeded:
    s = base(root)
    FAULTS[fault](s)
    return s


# --- the real collector, observed on disk ----------------------------------------------------


def files(root: Path) -> set[str]:
    out = set()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            out.add(os.path.relpath(os.path.join(folder, name), root))
    return out


@dataclass
class RealRun:
    returncode: int
    output: str
    deleted: set[str]


# Run as root without the capabilities that let root read any file: a file of mode 0 then
# answers "permission denied", as it does to a registry running as its own user.
WITHOUT_READ_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def real_gc(
    root: Path,
    version: int,
    delete_untagged: bool,
    workdir: Path,
    *,
    dry_run: bool = False,
    prefix: tuple[str, ...] = (),
) -> RealRun:
    """Run the real collector on a copy of `root`; the files it deleted. `prefix` comes
    before the command (WITHOUT_READ_OVERRIDE)."""
    copy = workdir / f"copy-v{version}-{int(delete_untagged)}{'-dry' if dry_run else ''}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy, symlinks=True)
    config = workdir / "config.yml"
    config.write_text(
        json.dumps({"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(copy)}}})
    )
    before = files(copy)
    command = [*prefix, str(binary(version)), "garbage-collect"]
    if dry_run:
        command.append("--dry-run")
    if delete_untagged:
        command.append("--delete-untagged")
    command.append(str(config))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"
    }
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, check=False
    )
    return RealRun(done.returncode, done.stdout + done.stderr, before - files(copy))


def predicted_files(before: set[str], p: Prediction) -> set[str]:
    """The files the predicted deletions remove from a tree holding `before`."""
    prefixes = []
    for d in p.blobs:
        alg, _, hex_ = d.partition(":")
        prefixes.append(f"{V2}/blobs/{alg}/{hex_[:2]}/{hex_}/")
    for m in p.manifests:
        alg, _, hex_ = m.digest.partition(":")
        repo = f"{V2}/repositories/{m.repository}/_manifests"
        prefixes.append(f"{repo}/revisions/{alg}/{hex_}/")
        prefixes.extend(f"{repo}/tags/{t}/index/{alg}/{hex_}/" for t in m.tags)
    exact = {
        f"{V2}/repositories/{r}/_layers/{d.partition(':')[0]}/{d.partition(':')[2]}/link"
        for r, d in p.layer_links
    }
    return {f for f in before if f in exact or any(f.startswith(x) for x in prefixes)}
