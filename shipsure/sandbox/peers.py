"""Where the field's own tools live, so tests and benchmarks can run them as real peers.

`scripts/peers.sh` builds distribution v3's `registry`, `crane`, `regctl` and `oras` from
their pinned Go module releases into `.tools/bin` of the source checkout. Nothing here
downloads or builds: a peer that is not there is reported absent, with the reason, and the
tests that need it skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

Peer = Literal["registry", "crane", "regctl", "oras", "skopeo"]

# `SHIPSURE_PEERS_BIN` points elsewhere (an installed package has no checkout beside it).
PEERS_BIN_VARIABLE = "SHIPSURE_PEERS_BIN"
_CHECKOUT_BIN = Path(__file__).resolve().parents[2] / ".tools" / "bin"
# Debian packages these; the Go peers come from scripts/peers.sh only.
_FROM_DEBIAN: frozenset[str] = frozenset({"skopeo"})


def peers_bin() -> Path:
    """The folder scripts/peers.sh builds into (`.tools/bin` unless overridden)."""
    override = os.environ.get(PEERS_BIN_VARIABLE)
    return Path(override) if override else _CHECKOUT_BIN


def peer_path(name: Peer) -> Path | None:
    """The executable of peer `name`, or None when it is not built/installed.

    Go peers are taken from `peers_bin()` only, never from PATH: the pinned version is the
    one the tests' expectations were observed with.
    """
    if name in _FROM_DEBIAN:
        found = shutil.which(name)
        return Path(found) if found else None
    candidate = peers_bin() / name
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def missing_reason(name: Peer) -> str:
    """One line saying why `name` is absent and how to get it (a skip reason)."""
    if name in _FROM_DEBIAN:
        return f"needs {name} (Debian package {name}; scripts/setup.sh installs it)"
    return f"needs {name} in {peers_bin()} (built by scripts/peers.sh from its Go module)"
