"""One small image (an index, one linux/amd64 child, its config and layer) as the hostile
verify and probe tests serve it through httpx.MockTransport, and the answer a
well-behaved registry gives for one of its objects."""

from __future__ import annotations

import json

import httpx

from shipsure import mediatypes as mt
from shipsure.model import Digest

LAYER = b"layer bytes " * 100
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def desc(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


CHILD = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, CONFIG),
        "layers": [desc(mt.OCI_LAYER_GZIP, LAYER)],
    }
).encode()
INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            desc(mt.OCI_MANIFEST, CHILD, platform={"os": "linux", "architecture": "amd64"})
        ],
    }
).encode()


def objects(repository: str) -> dict[str, tuple[bytes, str]]:
    """Path -> (body, media type) of the image pushed as `repository:latest`."""
    return {
        f"/v2/{repository}/manifests/latest": (INDEX, mt.OCI_INDEX),
        f"/v2/{repository}/manifests/{Digest.of(INDEX)}": (INDEX, mt.OCI_INDEX),
        f"/v2/{repository}/manifests/{Digest.of(CHILD)}": (CHILD, mt.OCI_MANIFEST),
        f"/v2/{repository}/blobs/{Digest.of(CONFIG)}": (CONFIG, "application/octet-stream"),
        f"/v2/{repository}/blobs/{Digest.of(LAYER)}": (LAYER, "application/octet-stream"),
    }


def answer(request: httpx.Request, body: bytes, media_type: str) -> httpx.Response:
    """200 with the headers distribution sends; no body for a HEAD."""
    headers = {
        "Content-Type": media_type,
        "Docker-Content-Digest": str(Digest.of(body)),
        "Content-Length": str(len(body)),
    }
    return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)
