"""A throw-away real registry and sample images, for the demo, benchmarks and tests.

- `registry.SandboxRegistry` starts distribution 2.8 (`docker-registry`) or v3 on 127.0.0.1.
- `peers` finds the field's tools (v3 `registry`, crane, regctl, oras) scripts/peers.sh built.
- `images` pushes deterministic images, indexes and artifacts over the HTTP API with
  plain httpx (never shipsure's own client, so tests do not check the client with itself).
- `faults` breaks filesystem storage in every way registry-facts §4 lists.

Unlike the rest of the package this may do I/O freely: it exists to set up the world.
"""

from __future__ import annotations

from shipsure.errors import CouldNotRunError


class SandboxError(CouldNotRunError):
    """The sandbox could not start, push or break what it was asked to."""
