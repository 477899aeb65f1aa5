"""Fixtures for `shipsure serve`: a real registry whose notifications point at a real
`shipsure serve` process, both on free 127.0.0.1 ports, stopped by pid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_helpers import ServeProcess, free_port, notifications_config

from shipsure.sandbox.registry import Flavour, SandboxRegistry, missing_reason, registry_available


def require_registry(flavour: Flavour) -> None:
    if not registry_available(flavour):
        pytest.skip(missing_reason(flavour))


@dataclass
class Watched:
    registry: SandboxRegistry
    serve: ServeProcess


@pytest.fixture
def watched_factory(tmp_path: Path, registry_flavour: Flavour) -> Iterator[Callable[..., Watched]]:
    """Start a registry (2.8 or v3) notifying a serve process; both stopped at the end."""
    started: list[Watched] = []

    def start(*, blob_cache: bool = True, serve_args: tuple[str, ...] = ()) -> Watched:
        require_registry(registry_flavour)
        port = free_port()
        registry = SandboxRegistry(
            flavour=registry_flavour,
            blob_cache="inmemory" if blob_cache else None,
            extra_config={"notifications": notifications_config(port)},
        )
        registry.start()
        workdir = tmp_path / f"serve{len(started)}"
        workdir.mkdir()
        serve = ServeProcess(
            registry.host, port, workdir / "state.sqlite", workdir, extra=list(serve_args)
        )
        watched = Watched(registry, serve)
        started.append(watched)
        serve.start()
        return watched

    yield start
    for watched in started:
        watched.serve.stop()
        watched.registry.close()
