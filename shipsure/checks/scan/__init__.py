"""`shipsure scan`: an offline fsck of distribution's storage (see `core` for the walk).

Modules: `core` runs a scan, `walk` reads one repository, `kinds` names what a scan finds,
`recheck` confirms a fault on storage before it is reported, `merge` joins sharded reports,
`repair` plans and applies the safe repairs.
"""

from shipsure.checks.scan.core import (
    DEFAULT_RECHECK_DELAY,
    DEFAULT_UNREFERENCED_MIN_AGE,
    DEFAULT_UPLOAD_MAX_AGE,
    DEFAULT_WORKERS,
    ScanOptions,
    scan,
)
from shipsure.checks.scan.shard import Shard

__all__ = [
    "DEFAULT_RECHECK_DELAY",
    "DEFAULT_UNREFERENCED_MIN_AGE",
    "DEFAULT_UPLOAD_MAX_AGE",
    "DEFAULT_WORKERS",
    "ScanOptions",
    "Shard",
    "scan",
]
