"""Asking the real registry what it serves, with plain httpx (not shipsure's client)."""

from __future__ import annotations

import httpx

from shipsure import mediatypes as mt


class Served:
    """What the registry at `url` answers for one repository (full Accept list always)."""

    def __init__(self, client: httpx.Client, url: str, repo: str) -> None:
        self.client = client
        self.repo = repo
        self.base = f"{url}/v2/{repo}"

    def manifest(self, reference: str, method: str = "GET") -> httpx.Response:
        return self.client.request(
            method, f"{self.base}/manifests/{reference}", headers={"Accept": mt.MANIFEST_ACCEPT}
        )

    def blob(self, digest: str, method: str = "GET") -> httpx.Response:
        return self.client.request(method, f"{self.base}/blobs/{digest}")


def error_code(response: httpx.Response) -> str:
    """The first distribution error code of a JSON error body, or "" for anything else."""
    try:
        errors = response.json()["errors"]
        return str(errors[0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
