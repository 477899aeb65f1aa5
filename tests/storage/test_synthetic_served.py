"""The synthetic generator writes the exact layout: the real registry serves all of it."""

from __future__ import annotations

import hashlib

import httpx

from shipsure import mediatypes as mt
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, generate


def test_real_registry_serves_every_generated_tag_child_and_blob(
    fresh_registry: SandboxRegistry,
) -> None:
    tree = generate(fresh_registry.root, SyntheticSpec(repositories=3, tags=2, platforms=3))
    with httpx.Client(base_url=fresh_registry.url, timeout=10) as http:
        catalog = http.get("/v2/_catalog").json()["repositories"]
        assert catalog == tree.repositories
        for t in tree.tags:
            base = f"/v2/{t.repository}"
            assert sorted(http.get(f"{base}/tags/list").json()["tags"]) == ["v0", "v1"]
            index = http.get(f"{base}/manifests/{t.tag}", headers={"Accept": mt.MANIFEST_ACCEPT})
            assert index.status_code == 200
            assert index.headers["Docker-Content-Digest"] == t.index
            assert "sha256:" + hashlib.sha256(index.content).hexdigest() == t.index
            for child in t.children:
                got = http.get(
                    f"{base}/manifests/{child.digest}", headers={"Accept": mt.MANIFEST_ACCEPT}
                )
                assert got.status_code == 200
            for blob in t.blobs:
                got = http.get(f"{base}/blobs/{blob}")
                assert got.status_code == 200
                assert "sha256:" + hashlib.sha256(got.content).hexdigest() == blob
