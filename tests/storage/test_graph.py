"""One answer to "what does this manifest reference": the scan's fast parser against
`model.contents`, over every manifest the sandbox and real clients write and odd ones.

The fast path may decline (return None, and the model answers); when it answers, it must
answer exactly as the model does, and when the model refuses the bytes it must decline.
Each rule of the fast path has an odd manifest below that breaks it when the rule is gone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipsure import mediatypes as mt
from shipsure.errors import ManifestError
from shipsure.model import Digest, contents, parse_manifest
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, generate
from shipsure.storage import graph
from shipsure.storage.graph import ManifestNode, model_node, node_from_bytes

H = "a" * 64
D1, D2, D3 = f"sha256:{'1' * 64}", f"sha256:{'2' * 64}", f"sha256:{'3' * 64}"
D512 = f"sha512:{'4' * 128}"
D384 = f"sha384:{'5' * 96}"
FOREIGN_URL = "https://go.microsoft.com/fwlink/?linkid=837858"


def _desc(digest: Any = D2, media_type: Any = mt.OCI_LAYER_GZIP, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": 10, **extra}


def _image(*layers: Any, **doc: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": _desc(D1, mt.OCI_CONFIG),
        "layers": list(layers) or [_desc()],
    }
    return {**base, **doc}


def _index(*entries: Any, **doc: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX}
    return {**base, "manifests": list(entries), **doc}


def _child(digest: str = D1, **extra: Any) -> dict[str, Any]:
    return _desc(digest, mt.OCI_MANIFEST, **extra)


AMD64 = {"os": "linux", "architecture": "amd64"}
ATTESTATION = {mt.ATTESTATION_REFERENCE_TYPE: mt.ATTESTATION_MANIFEST}

# name -> document (dumped to JSON) or raw bytes.
ODD: dict[str, Any] = {
    # image manifests
    "oci image": _image(),
    "docker image": _image(
        _desc(D2, mt.DOCKER_LAYER), mediaType=mt.DOCKER_MANIFEST, config=_desc(D1, mt.DOCKER_CONFIG)
    ),
    "no layers": _image(layers=[]),
    "same layer twice": _image(_desc(D2), _desc(D2)),
    "docker foreign layer with urls": _image(
        _desc(D3, mt.DOCKER_FOREIGN_LAYER, urls=[FOREIGN_URL]), _desc(D2, mt.DOCKER_LAYER)
    ),
    "docker foreign layer without urls": _image(_desc(D3, mt.DOCKER_FOREIGN_LAYER)),
    "oci nondistributable with urls": _image(
        _desc(D3, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", urls=["u"])
    ),
    "oci nondistributable without urls": _image(
        _desc(D3, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
    ),
    "plain layer with urls": _image(_desc(D3, urls=[FOREIGN_URL])),
    "empty urls on foreign type": _image(_desc(D3, mt.DOCKER_FOREIGN_LAYER, urls=[])),
    "subject": _image(subject=_child(D3)),
    "subject not an object": _image(subject="sha256:x"),
    "artifactType": _image(artifactType="application/vnd.example.sbom"),
    "artifactType not a string": _image(artifactType=5),
    "unknown fields": _image(_desc(D2, extra={"x": 1}), whatever=[1, 2], annotations={"a": "b"}),
    "sha512 layer": _image(_desc(D512)),
    "sha384 layer": _image(_desc(D384)),
    "upper-case hex": _image(_desc("sha256:" + "A" * 64)),
    "digest with newline": _image(_desc(D2 + "\n")),
    "short digest": _image(_desc("sha256:abc")),
    "unknown algorithm": _image(_desc("md5:" + "a" * 32)),
    "size bool": _image(_desc(D2, size=True)),
    "size negative": _image(_desc(D2, size=-1)),
    "size float": _image(_desc(D2, size=1.5)),
    "size missing": _image({"mediaType": mt.OCI_LAYER, "digest": D2}),
    "media type empty": _image(_desc(D2, "")),
    "media type not a string": _image(_desc(D2, 7)),
    "annotations not an object": _image(_desc(D2, annotations=["a"])),
    "annotations empty list": _image(_desc(D2, annotations=[])),
    "urls not a list": _image(_desc(D2, urls="https://x")),
    "layer not an object": _image("sha256:x"),
    "layers not a list": _image(layers={"a": 1}),
    "layers an empty object": _image(layers={}),
    "digest not a string": _image(_desc(5)),
    "config missing": {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": []},
    "config not an object": _image(config=[1]),
    "layer platform not an object": _image(_desc(D2, platform="linux")),
    "no mediaType, config": {k: v for k, v in _image().items() if k != "mediaType"},
    "schemaVersion string": _image(schemaVersion="2"),
    "schemaVersion 3": _image(schemaVersion=3),
    "unknown media type": _image(mediaType="application/vnd.example+json"),
    "media type not a string at top": _image(mediaType=5),
    "json list": [1, 2],
    "not json": b"\x1f\x8b\x08\x00 gzip bytes",
    "utf-16": json.dumps(_image()).encode("utf-16"),
    "utf-8 bom": b"\xef\xbb\xbf" + json.dumps(_image()).encode(),
    "over 4 MiB": json.dumps(_image()).encode() + b" " * mt.MAX_MANIFEST_BYTES,
    # indexes
    "oci index": _index(
        _child(D1, platform=AMD64), _child(D2, platform={**AMD64, "variant": "v2"})
    ),
    "docker list": _index(
        _desc(D1, mt.DOCKER_MANIFEST, platform=AMD64), mediaType=mt.DOCKER_MANIFEST_LIST
    ),
    "attestation entry": _index(
        _child(D1, platform=AMD64),
        _child(D2, platform={"os": "unknown", "architecture": "unknown"}, annotations=ATTESTATION),
    ),
    "attestation without platform": _index(_child(D2, annotations=ATTESTATION)),
    "entry without platform": _index(_child(D1)),
    "platform empty os": _index(_child(D1, platform={"os": "", "architecture": "amd64"})),
    "platform empty variant": _index(_child(D1, platform={**AMD64, "variant": ""})),
    "platform variant not a string": _index(_child(D1, platform={**AMD64, "variant": 8})),
    "platform without os": _index(_child(D1, platform={"architecture": "amd64"})),
    "platform arch not a string": _index(_child(D1, platform={"os": "linux", "architecture": 1})),
    "platform not an object": _index(_child(D1, platform="linux/amd64")),
    "nested index": _index(_desc(D1, mt.OCI_INDEX), _child(D2, platform=AMD64)),
    "entries carrying blob media types": _index(
        _child(D1, platform=AMD64),
        _desc(D2, mt.OCI_LAYER_GZIP),
        _desc(D3, mt.OCI_CONFIG),
        _desc(D512, mt.OCI_EMPTY, platform=AMD64),
    ),
    "docker layer and config in a list": _index(
        _desc(D2, mt.DOCKER_LAYER), _desc(D3, mt.DOCKER_CONFIG), mediaType=mt.DOCKER_MANIFEST_LIST
    ),
    "foreign layer in an index": _index(
        _desc(D3, mt.DOCKER_FOREIGN_LAYER, urls=[FOREIGN_URL]), _child(D1)
    ),
    "unknown entry media type": _index(_desc(D1, "application/vnd.example.thing+json")),
    "index subject": _index(_child(D1), subject=_child(D3)),
    "index artifactType": _index(_child(D1), artifactType="application/vnd.example"),
    "index artifactType not a string": _index(_child(D1), artifactType=[]),
    "manifests not a list": _index(manifests={"a": 1}),
    "manifests an empty object": _index(manifests={}),
    "entry not an object": _index("x"),
    "entry bad digest": _index(_child("sha256:zz")),
    "entry digest with trailing newline": _index(_child(D1 + "\n")),
    "index without manifests": {"schemaVersion": 2, "mediaType": mt.OCI_INDEX},
    "no mediaType, manifests": {"schemaVersion": 2, "manifests": [_child(D1)]},
    "index annotations not an object": _index(_child(D1, annotations="x")),
    "index urls not a list": _index(_child(D1, urls={"a": "b"})),
    # schema1
    "schema1": {
        "schemaVersion": 1,
        "name": "a/b",
        "tag": "v1",
        "fsLayers": [{"blobSum": D2}, {"blobSum": D3}, {"blobSum": D2}],
    },
    "schema1 bad blobSum": {"schemaVersion": 1, "fsLayers": [{"blobSum": "nope"}]},
    "schema1 without fsLayers": {"schemaVersion": 1},
    "schema1 declared by type": {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_SCHEMA1_SIGNED,
        "fsLayers": [{"blobSum": D2}],
    },
}


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value, indent=2).encode()


def _model(raw: bytes, digest: str) -> ManifestNode | None:
    try:
        return model_node(raw, digest)
    except ManifestError:
        return None


def assert_one_answer(raw: bytes) -> bool:
    """The fast path agrees with the model on `raw`; True when it answered at all."""
    digest = str(Digest.of(raw))
    fast = graph._fast_node(raw, digest)
    slow = _model(raw, digest)
    if fast is None:
        return False
    assert slow is not None, "the fast path accepted bytes the model refuses"
    assert fast == slow
    return True


@pytest.mark.parametrize("name", sorted(ODD))
def test_fast_path_agrees_with_the_model_on_odd_manifests(name: str) -> None:
    assert_one_answer(_raw(ODD[name]))


# The shapes the fast path must take itself (else it would agree by never answering).
FAST = [
    "oci image",
    "docker image",
    "no layers",
    "docker foreign layer with urls",
    "docker foreign layer without urls",
    "oci nondistributable with urls",
    "oci nondistributable without urls",
    "plain layer with urls",
    "artifactType",
    "unknown fields",
    "sha512 layer",
    "sha384 layer",
    "oci index",
    "docker list",
    "attestation entry",
    "attestation without platform",
    "platform empty os",
    "platform empty variant",
    "platform variant not a string",
    "nested index",
    "entries carrying blob media types",
    "docker layer and config in a list",
    "foreign layer in an index",
    "unknown entry media type",
    "index artifactType",
    "index without manifests",
    "entry without platform",
    "empty urls on foreign type",
    "same layer twice",
    "layer platform not an object",
]


@pytest.mark.parametrize("name", FAST)
def test_fast_path_answers_common_shapes(name: str) -> None:
    assert assert_one_answer(_raw(ODD[name]))


def test_what_is_referenced_pulled_and_marked() -> None:
    """The rules themselves, from the model: a listed blob is referenced whatever its type."""
    image = parse_manifest(_raw(ODD["docker foreign layer with urls"]))
    found = contents(image)
    assert [str(d.digest) for d in found.blobs] == [D1, D2]
    assert [str(d.digest) for d in found.foreign] == [D3]
    assert {str(d.digest) for d in found.listed} == {D1, D2, D3}
    assert D3 not in {str(d.digest) for d in found.pull}
    index = contents(parse_manifest(_raw(ODD["entries carrying blob media types"])))
    assert [str(d.digest) for d in index.children] == [D1]
    assert [str(d.digest) for d in index.blobs] == [D2, D3, D512]
    with_subject = contents(parse_manifest(_raw(ODD["subject"])))
    assert with_subject.subject is not None and str(with_subject.subject.digest) == D3
    assert D3 not in {str(d.digest) for d in with_subject.listed}
    node = node_from_bytes(_raw(ODD["schema1"]), D1)
    assert [(r.digest, r.size) for r in node.blobs] == [(D2, -1), (D3, -1)]


def test_every_rule_of_the_fast_path_is_exercised() -> None:
    """The fast path declines exactly the odd shapes it must; a rule that never fires is
    either dead or untested."""
    declined = {name for name in ODD if not assert_one_answer(_raw(ODD[name]))}
    assert declined == set(ODD) - set(FAST)


# --- what the sandbox and real clients write -------------------------------------------


def _stored_manifests(root: Path, repository: str | None = None) -> Iterator[bytes]:
    """Every blob in the store the model reads as a manifest (configs and layers are not),
    or only the manifests `repository` holds revisions of."""
    v2 = root / "docker/registry/v2"
    if repository is None:
        paths = sorted((v2 / "blobs").glob("*/*/*/data"))
    else:
        revisions = v2 / "repositories" / repository / "_manifests/revisions/sha256"
        paths = [v2 / "blobs/sha256" / r.name[:2] / r.name / "data" for r in revisions.iterdir()]
    for data in paths:
        raw = data.read_bytes()
        if _model(raw, str(Digest.of(raw))) is not None:
            yield raw


def test_synthetic_storage_one_answer(tmp_path: Path) -> None:
    generate(tmp_path, SyntheticSpec(repositories=2, tags=2, platforms=3, layers=2))
    answered = [assert_one_answer(raw) for raw in _stored_manifests(tmp_path)]
    assert answered and all(answered)


def test_sandbox_pushes_one_answer(registry: SandboxRegistry, repo_name: str) -> None:
    url = registry.url
    images.push_image(url, repo_name, "oci", kind="oci")
    images.push_image(url, repo_name, "docker", kind="docker")
    idx = images.push_index(url, repo_name, "multi", attestations=True, nested=True)
    images.push_index(url, repo_name, "list", kind="docker")
    images.push_artifact(url, repo_name, idx.digest)
    answered = [assert_one_answer(raw) for raw in _stored_manifests(registry.root, repo_name)]
    # Everything but the artifact (it has a subject) takes the fast path.
    assert len(answered) >= 12 and answered.count(False) == 1


def _tool(name: str) -> Path:
    path = Path(__file__).resolve().parents[2] / ".tools" / "bin" / name
    if not path.exists():
        pytest.skip(f"needs {name} (scripts/peers.sh builds it into .tools/bin)")
    return path


def test_real_clients_one_answer(registry: SandboxRegistry, repo_name: str, tmp_path: Path) -> None:
    """crane and oras write their own manifests: images, indexes, artifacts with subjects."""
    crane, oras = _tool("crane"), _tool("oras")
    if shutil.which("tar") is None:
        pytest.skip("needs tar")
    ref = f"{registry.host}/{repo_name}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}

    def run(*args: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    (tmp_path / "file.txt").write_text("hello\n")
    run("tar", "-cf", "layer.tar", "file.txt")
    run(crane, "append", "--insecure", "-f", "layer.tar", "-t", f"{ref}:crane")
    run(crane, "append", "--insecure", "--oci-empty-base", "-f", "layer.tar", "-t", f"{ref}:oci")
    run(crane, "index", "append", "--insecure", "-m", f"{ref}:crane", "-t", f"{ref}:cindex")
    run(oras, "push", "--plain-http", f"{ref}:artifact", "file.txt")
    run(
        oras,
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.sbom",
        f"{ref}:crane",
        "file.txt",
    )
    answered = [assert_one_answer(raw) for raw in _stored_manifests(registry.root, repo_name)]
    assert len(answered) >= 5 and any(answered)


# --- every rule of the fast path matters --------------------------------------------------
# Each mutation deletes (or weakens) one rule of `_fast_node`; the odd manifests above must
# then expose it: the mutated fast path answers differently from the model, accepts what the
# model refuses, crashes, or declines a shape it must take.
MUTATIONS = [
    (
        "size limit",
        "    if len(raw) > mt.MAX_MANIFEST_BYTES:\n        return None\n    try:",
        "    try:",
    ),
    ("schemaVersion", 'or doc.get("schemaVersion") != 2:', ":"),
    (
        "mediaType known",
        'if media_type not in mt.MANIFESTS or "subject" in doc:',
        'if "subject" in doc:',
    ),
    (
        "subject",
        'if media_type not in mt.MANIFESTS or "subject" in doc:',
        "if media_type not in mt.MANIFESTS:",
    ),
    (
        "artifactType",
        "    if artifact_type is not None and not isinstance(artifact_type, str):\n"
        "        return None\n",
        "",
    ),
    ("manifests list", "        if not isinstance(entries, list):\n            return None\n", ""),
    ("blob-typed entries", 'if not mt.is_blob_type(entry["mediaType"]):', "if True:"),
    (
        "foreign in index",
        "            elif _is_foreign(entry):\n                foreign.append(ref)\n",
        "",
    ),
    ("config/layers", "if config is None or not isinstance(layers, list):", "if config is None:"),
    (
        "config none",
        "if config is None or not isinstance(layers, list):",
        "if not isinstance(layers, list):",
    ),
    (
        "foreign layers",
        "(foreign if _is_foreign(entry) else blobs).append(ref)",
        "blobs.append(ref)",
    ),
    ("foreign docker type", "return media_type == mt.DOCKER_FOREIGN_LAYER or (", "return ("),
    (
        "foreign urls",
        'bool(entry.get("urls")) and "nondistributable" in media_type',
        '"nondistributable" in media_type',
    ),
    (
        "foreign nondist",
        'bool(entry.get("urls")) and "nondistributable" in media_type',
        'bool(entry.get("urls"))',
    ),
    (
        "ref dict",
        "    if not isinstance(entry, dict):\n        return None\n    d = entry",
        "    d = entry",
    ),
    (
        "digest str",
        "        not isinstance(d, str)\n        or not _DIGEST_RE",
        "        not _DIGEST_RE",
    ),
    ("digest re", "        or not _DIGEST_RE.fullmatch(d)\n", "\n"),
    ("digest fullmatch", "_DIGEST_RE.fullmatch(d)", "_DIGEST_RE.match(d)"),
    ("size int", "        or type(size) is not int\n", "\n"),
    ("size nonneg", "        or size < 0\n", "\n"),
    ("mt str", "        or not isinstance(media_type, str)\n", "\n"),
    ("mt nonempty", "        or not media_type\n", "\n"),
    ("annotations", "(annotations is not None and not isinstance(annotations, dict)) or (", "("),
    ("urls", "or (\n        urls is not None and not isinstance(urls, list)\n    )", ""),
    (
        "attestation",
        "    if annotations and annotations.get(mt.ATTESTATION_REFERENCE_TYPE)"
        " == mt.ATTESTATION_MANIFEST:\n"
        '        return Ref(d, size, f"attestation {d}")\n',
        "",
    ),
    ("platform none", "    if platform is None:\n        return Ref(d, size, d)\n", ""),
    ("platform dict", "    if not isinstance(platform, dict):\n        return None\n", ""),
    (
        "os/arch str",
        "    if not isinstance(os_, str) or not isinstance(arch, str):\n        return None\n",
        "",
    ),
    ("variant str", 'variant if isinstance(variant, str) else ""', "variant"),
    (
        "label join",
        '"/".join(p for p in (os_, arch, variant if isinstance(variant, str) else "") if p)',
        '"/".join(p for p in (os_, arch, variant if isinstance(variant, str) else ""))',
    ),
]


def _shape(node: ManifestNode | Any) -> tuple[Any, ...]:
    def refs(items: Any) -> tuple[tuple[str, int, str], ...]:
        return tuple((r.digest, r.size, r.label) for r in items)

    return (
        node.digest,
        node.media_type,
        refs(node.children),
        refs(node.blobs),
        node.subject,
        refs(node.foreign),
    )


def _exposed(mutant: types.ModuleType) -> bool:
    for name, value in ODD.items():
        raw = _raw(value)
        digest = str(Digest.of(raw))
        try:
            fast = mutant._fast_node(raw, digest)
        except Exception:
            return True
        if fast is None:
            if name in FAST:  # the fast path gave up a shape it must take
                return True
            continue
        slow = _model(raw, digest)
        if slow is None or _shape(fast) != _shape(slow):
            return True
    return False


@pytest.mark.parametrize(("rule", "old", "new"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_deleting_a_rule_of_the_fast_path_is_caught(rule: str, old: str, new: str) -> None:
    source = Path(graph.__file__).read_text()
    assert old in source, f"rule {rule!r} is no longer written this way; update MUTATIONS"
    name = f"{graph.__name__}_without_{rule.replace(' ', '_').replace('/', '_')}"
    mutant = types.ModuleType(name)
    sys.modules[name] = mutant  # dataclasses look their module up while building classes
    try:
        exec(compile(source.replace(old, new, 1), name, "exec"), mutant.__dict__)
        assert _exposed(mutant), f"deleting the fast path's {rule!r} rule goes unnoticed"
    finally:
        del sys.modules[name]
