"""Write distribution's storage layout straight to disk, fast, for tests and benchmarks.

Seeding a large registry over HTTP takes minutes (registry-facts §5); writing the exact
files a push leaves behind takes seconds, and the real registry serves what this writes
(tests/storage/test_synthetic_served.py proves it). Each tag is a multi-arch image as
`docker buildx --push` makes it: an OCI index whose children each have a config, a base
layer shared by every image of the repository and layers of their own.

What a push writes, per object (registry-facts §2):
    blob:      blobs/sha256/<hh>/<hex>/data  +  <repo>/_layers/sha256/<hex>/link
    manifest:  blobs/sha256/<hh>/<hex>/data  +  <repo>/_manifests/revisions/sha256/<hex>/link
    tag:       <repo>/_manifests/tags/<tag>/current/link + .../index/sha256/<hex>/link
Content is a pure function of the seed, so two runs write identical trees.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from shipsure import mediatypes as mt

_V2 = "docker/registry/v2"
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x", "linux/ppc64le")


@dataclass(frozen=True)
class SyntheticSpec:
    repositories: int = 4
    tags: int = 2
    platforms: int = 2
    layers: int = 2  # layers of each image's own, besides the repository's shared base
    layer_size: int = 512
    # Repositories are named `team<i % teams>/app<i>` (nested names) when teams > 0.
    teams: int = 2
    seed: str = "synthetic"


@dataclass
class SyntheticImage:
    digest: str
    platform: str
    config: str
    layers: tuple[str, ...]


@dataclass
class SyntheticTag:
    repository: str
    tag: str
    index: str
    children: list[SyntheticImage]

    @property
    def blobs(self) -> set[str]:
        out: set[str] = set()
        for child in self.children:
            out.add(child.config)
            out.update(child.layers)
        return out


@dataclass
class SyntheticStorage:
    root: Path
    tags: list[SyntheticTag] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    blobs: int = 0

    def tag(self, repository: str, tag: str) -> SyntheticTag:
        for t in self.tags:
            if t.repository == repository and t.tag == tag:
                return t
        raise KeyError(f"{repository}:{tag}")

    @property
    def repositories(self) -> list[str]:
        return sorted({t.repository for t in self.tags})


def repository_name(spec: SyntheticSpec, i: int) -> str:
    return f"team{i % spec.teams}/app{i:05d}" if spec.teams else f"app{i:05d}"


class _Writer:
    """Creates files with raw system calls; remembers folders it already made."""

    def __init__(self, root: Path, out: SyntheticStorage) -> None:
        self.prefix = str(root).rstrip("/") + "/"
        self.made: set[str] = set()
        self.out = out
        self.written_blobs: set[str] = set()

    def _mkdirs(self, folder: str) -> None:
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)

    def write(self, rel: str, data: bytes) -> None:
        path = self.prefix + rel
        self._mkdirs(path.rpartition("/")[0])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self.out.files += 1
        self.out.bytes += len(data)

    def blob(self, data: bytes) -> str:
        hex_ = hashlib.sha256(data).hexdigest()
        if hex_ not in self.written_blobs:
            self.written_blobs.add(hex_)
            self.write(f"{_V2}/blobs/sha256/{hex_[:2]}/{hex_}/data", data)
            self.out.blobs += 1
        return f"sha256:{hex_}"

    def link(self, rel: str, digest: str) -> None:
        self.write(rel, digest.encode())


def _json(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def generate(
    root: str | os.PathLike[str], spec: SyntheticSpec, *, record: bool = True
) -> SyntheticStorage:
    """Write `spec` under `root` (the registry's rootdirectory). `record=False` keeps only
    counters, for trees with millions of blobs."""
    out = SyntheticStorage(Path(root))
    writer = _Writer(Path(root), out)
    rng = random.Random(spec.seed)
    for r in range(spec.repositories):
        repo = repository_name(spec, r)
        repo_dir = f"{_V2}/repositories/{repo}"
        linked: set[str] = set()

        def layer_link(digest: str, _dir: str = repo_dir, _linked: set[str] = linked) -> None:
            if digest not in _linked:
                _linked.add(digest)
                writer.link(f"{_dir}/_layers/sha256/{digest[7:]}/link", digest)

        base = _layer(rng, f"{spec.seed}/{repo}/base", spec.layer_size)
        base_digest = writer.blob(base)
        for t in range(spec.tags):
            tag = f"v{t}"
            children: list[SyntheticImage] = []
            entries = []
            for p in range(spec.platforms):
                platform = PLATFORMS[p % len(PLATFORMS)]
                own = [
                    writer.blob(_layer(rng, f"{spec.seed}/{repo}/{tag}/{p}/{i}", spec.layer_size))
                    for i in range(spec.layers)
                ]
                layer_digests = [base_digest, *own]
                config = _json(
                    {
                        "architecture": platform.split("/")[1],
                        "os": "linux",
                        "created": "2024-01-01T00:00:00Z",
                        "rootfs": {"type": "layers", "diff_ids": layer_digests},
                        "config": {"Labels": {"seed": f"{spec.seed}/{repo}/{tag}/{p}"}},
                    }
                )
                config_digest = writer.blob(config)
                for d in (config_digest, *layer_digests):
                    layer_link(d)
                manifest = _json(
                    {
                        "schemaVersion": 2,
                        "mediaType": mt.OCI_MANIFEST,
                        "config": {
                            "mediaType": mt.OCI_CONFIG,
                            "digest": config_digest,
                            "size": len(config),
                        },
                        "layers": [
                            {"mediaType": mt.OCI_LAYER_GZIP, "digest": d, "size": spec.layer_size}
                            for d in layer_digests
                        ],
                    }
                )
                child = writer.blob(manifest)
                writer.link(f"{repo_dir}/_manifests/revisions/sha256/{child[7:]}/link", child)
                os_, arch, *variant = platform.split("/")
                plat: dict[str, str] = {"os": os_, "architecture": arch}
                if variant:
                    plat["variant"] = variant[0]
                entries.append(
                    {
                        "mediaType": mt.OCI_MANIFEST,
                        "digest": child,
                        "size": len(manifest),
                        "platform": plat,
                    }
                )
                children.append(
                    SyntheticImage(child, platform, config_digest, tuple(layer_digests))
                )
            index = _json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
            index_digest = writer.blob(index)
            writer.link(
                f"{repo_dir}/_manifests/revisions/sha256/{index_digest[7:]}/link", index_digest
            )
            writer.link(f"{repo_dir}/_manifests/tags/{tag}/current/link", index_digest)
            writer.link(
                f"{repo_dir}/_manifests/tags/{tag}/index/sha256/{index_digest[7:]}/link",
                index_digest,
            )
            if record:
                out.tags.append(SyntheticTag(repo, tag, index_digest, children))
    return out


def _layer(rng: random.Random, label: str, size: int) -> bytes:
    # Unique per label (the label leads), random after it so data does not compress away.
    head = label.encode()[:size]
    return head + rng.randbytes(max(0, size - len(head)))
