"""Recovery: content sources (interface.py and its implementations) and restore plans.

`open_source(text)` is the one way to name a source on the command line:

- `oci:PATH`              an OCI image layout (skopeo `oci:`, `crane push --oci`, buildx)
- `docker-archive:PATH`   a `docker save` tar (see docker_archive.py for what it can hold)
- `host[:port]`           another registry, same repository names
- `host[:port]/prefix`    another registry, repositories under `prefix/`
"""

from __future__ import annotations

from collections.abc import Callable

from shipsure.errors import UsageError
from shipsure.model import is_repository_name
from shipsure.recovery.interface import ContentSource, SourceError, SourceManifest
from shipsure.registry.http import HttpRegistry

OpenRegistry = Callable[[str], HttpRegistry]


def open_source(text: str, open_registry: OpenRegistry) -> ContentSource:
    """The source `text` names; `open_registry(host)` opens a registry with the command's
    connection options. Raises `UsageError` for an empty or malformed name and
    `SourceError` for a layout or archive that cannot be read."""
    spec = text.strip()
    if spec.startswith("oci:"):
        from shipsure.recovery.oci_layout import OciLayoutSource

        path = spec.removeprefix("oci:")
        if not path:
            raise UsageError("--from oci:PATH: the layout's folder is missing")
        return OciLayoutSource(path)
    if spec.startswith("docker-archive:"):
        from shipsure.recovery.docker_archive import DockerArchiveSource

        path = spec.removeprefix("docker-archive:")
        if not path:
            raise UsageError("--from docker-archive:PATH: the archive's path is missing")
        return DockerArchiveSource(path)
    from shipsure.recovery.registry_source import RegistrySource

    spec = spec.removeprefix("docker://")
    if spec.startswith(("http://", "https://")):
        # A scheme is a registry's, given as a host option is: https://host[:port][/prefix].
        scheme, _, rest = spec.partition("://")
        host, _, prefix = rest.partition("/")
        host = f"{scheme}://{host}" if host else ""
    else:
        host, _, prefix = spec.partition("/")
    prefix = prefix.strip("/")
    if not host:
        raise UsageError(
            f"--from {text!r}: want host[:port][/prefix], oci:PATH or docker-archive:PATH"
        )
    if prefix and not is_repository_name(prefix):
        # Said now, not as "invalid repository name 'Pre/app'" once damage is found.
        raise UsageError(
            f"--from {text!r}: prefix {prefix[:160]!r} is not a repository path "
            "(lower-case ASCII components such as mirror/team)"
        )
    return RegistrySource(open_registry(host), prefix)


__all__ = ["ContentSource", "SourceError", "SourceManifest", "open_source"]
