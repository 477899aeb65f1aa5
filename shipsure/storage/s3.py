"""Distribution's layout on S3, as the registry's `s3` storage driver writes it.

Keys are `<rootdirectory>/docker/registry/v2/...` (the driver strips the leading `/` of
`rootdirectory`). Folders are key prefixes, listed with a `/` delimiter. Needs boto3 (the
`s3` extra); credentials come from the usual AWS environment and files. Proven against
moto's standalone S3 server; any S3-compatible endpoint works with `endpoint_url`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shipsure.errors import CouldNotRunError
from shipsure.storage.interface import (
    Entry,
    FileInfo,
    StorageError,
    StorageMissingError,
    StorageReadError,
    StorageWriteError,
)

_CHUNK = 1 << 20
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def _client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - depends on the installation
        raise CouldNotRunError("S3 storage needs boto3: pip install 'shipsure[s3]'") from None
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=16,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Storage:
    can_fork_workers = False  # reads wait on the network: threads overlap them
    local_root: str | None = None

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._s3 = client if client is not None else _client(endpoint_url, region)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, path: str) -> str:
        if not self.prefix:
            return path
        return f"{self.prefix}/{path}" if path else self.prefix

    def _error(self, exc: Exception, path: str) -> StorageError:
        code = _code(exc)
        if code in _MISSING_CODES:
            return StorageMissingError(f"{self.describe()}/{path}: not found", path=path)
        return StorageReadError(f"{self.describe()}/{path}: {code or exc}", path=path)

    def check_root(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise StorageReadError(f"storage root {self.describe()}: {_code(exc) or exc}") from None

    def list_dir(self, path: str) -> list[Entry]:
        base = self._key(path)
        prefix = f"{base}/" if base else ""
        entries: list[Entry] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    entries.append(Entry(common["Prefix"][len(prefix) :].rstrip("/"), True))
                for obj in page.get("Contents", []):
                    entries.append(Entry(obj["Key"][len(prefix) :], False))
        except Exception as exc:
            raise self._error(exc, path) from None
        if not entries and path:
            raise StorageMissingError(f"{self.describe()}/{path}: not found", path=path)
        return entries

    def read(self, path: str, limit: int) -> bytes:
        try:
            answer = self._s3.get_object(
                Bucket=self.bucket, Key=self._key(path), Range=f"bytes=0-{limit}"
            )
            with answer["Body"] as body:
                data: bytes = body.read(limit + 1)
                return data
        except Exception as exc:
            if _code(exc) == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise self._error(exc, path) from None

    def read_many(
        self, folder: str, names: list[str], suffix: str, limit: int
    ) -> list[bytes | StorageError]:
        out: list[bytes | StorageError] = []
        for name in names:
            try:
                out.append(self.read(f"{folder}/{name}/{suffix}", limit))
            except StorageError as exc:
                out.append(exc)
        return out

    def stat(self, path: str) -> FileInfo | None:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self._key(path))
        except Exception as exc:
            error = self._error(exc, path)
            if isinstance(error, StorageMissingError):
                return None
            raise error from None
        return FileInfo(int(head["ContentLength"]), head["LastModified"].timestamp())

    def changed_at(self, path: str) -> float | None:
        # An object's LastModified; S3 keeps no folders, so an absent key says nothing.
        info = self.stat(path)
        return info.mtime if info is not None else None

    def hash_file(self, path: str, algorithm: str, size_hint: int = -1) -> tuple[str, int]:
        h = hashlib.new(algorithm)
        size = 0
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self._key(path))
            with answer["Body"] as body:
                while chunk := body.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except Exception as exc:
            raise self._error(exc, path) from None
        return h.hexdigest(), size

    def write_atomic(self, path: str, data: bytes) -> None:
        # A PUT is atomic on S3: readers see the old object or the new one, never a part.
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(path), Body=data)
        except Exception as exc:
            raise StorageWriteError(f"{self.describe()}/{path}: {_code(exc) or exc}") from None

    def remove_tree(self, path: str) -> None:
        key = self._key(path)
        try:
            keys = [key]
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{key}/"
            )
            for page in pages:
                keys += [obj["Key"] for obj in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
        except Exception as exc:
            raise StorageWriteError(f"{self.describe()}/{path}: {_code(exc) or exc}") from None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
