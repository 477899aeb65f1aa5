"""What a scan is asked to do (`ScanOptions`, its defaults) and the hashing process a
`--verify-content` scan runs beside its walk.

Kept apart from the walk's modules, and light to import (no walk, no worker pools), so the
command line can read its options and start hashing before the walk's modules load: the
hashing process then uses the other core while this one imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipsure.checks.scan.shard import Shard
from shipsure.model import DIGEST_ALGORITHMS
from shipsure.storage import blob_hasher
from shipsure.storage.interface import Storage

DEFAULT_THREADS = 4  # S3: threads mostly wait on the network
DEFAULT_WORKERS = DEFAULT_THREADS  # threads, where the storage cannot fork workers
DEFAULT_UPLOAD_MAX_AGE = 7 * 86400.0  # distribution's upload purging age (168 h)
# A blob a push is writing right now is unreferenced until its manifest lands; only blobs
# older than this are reported as garbage-collection candidates.
DEFAULT_UNREFERENCED_MIN_AGE = 3600.0
# A registry writes a push as several files (data, revision link, tag links) milliseconds
# apart; a fault whose files changed within this long must still hold this long after it
# was seen to be reported (older evidence is re-read once, without waiting).
DEFAULT_RECHECK_DELAY = 0.5


@dataclass(frozen=True)
class ScanOptions:
    verify_content: bool = False
    upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE
    unreferenced_min_age: float = DEFAULT_UNREFERENCED_MIN_AGE
    shard: Shard | None = None
    # Processes where the storage can fork workers (a local filesystem), else threads (S3);
    # None: one process per core, or DEFAULT_WORKERS threads.
    workers: int | None = None
    now: float | None = None  # "now" for ages; the clock when None
    recheck_delay: float = DEFAULT_RECHECK_DELAY


def start_hashing(storage: Storage, options: ScanOptions) -> blob_hasher.BackgroundHasher | None:
    """The process hashing the whole blob store for a `--verify-content` scan of a local
    filesystem, started now; None when the scan hashes in its walk instead (no content
    check asked, S3 has no local files, a shard hashes only its own repositories' blobs,
    or no process could start). The caller stops it (`stop()`) when done with it."""
    if not options.verify_content or options.shard is not None or storage.local_root is None:
        return None
    return blob_hasher.start(storage.local_root, DIGEST_ALGORITHMS)
