"""Bounded memory over a long simulated run of pushes and probes on a real registry.

The watcher runs in-process against the real registry with a simulated clock (a minute
per push, so 500 pushes are over 8 hours), and retention and pruning happen as they would.
Findings open and resolve again and again (a layer's data is taken away and put back),
probes run among the pushes, and /metrics and the page are rendered along the way.
Python's heap (tracemalloc) after the warm-up must stay flat, and the state file's tables
stay within their bounds.
"""

from __future__ import annotations

import gc
import shutil
import tracemalloc
from pathlib import Path

import pytest

from shipsure.registry import open_registry
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry, missing_reason, registry_available
from shipsure.serve.events import KIND_IMAGE, PushEvent
from shipsure.serve.metrics import render
from shipsure.serve.pushqueue import PushQueue
from shipsure.serve.server import App, HttpOptions
from shipsure.serve.store import Store
from shipsure.serve.watcher import Watcher, WatchOptions

PUSHES = 500
WARM_UP = 100
PROBE_EVERY = 40
# What the heap may grow by after the warm-up over 400 more pushes (a leak of even a
# few hundred bytes per push would pass this; one of a walk's reports would not).
ALLOWED_GROWTH_BYTES = 1_500_000


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_long_simulated_run_keeps_memory_and_state_bounded(tmp_path: Path) -> None:
    if not registry_available("2.8"):
        pytest.skip(missing_reason("2.8"))
    clock = _Clock()
    with SandboxRegistry() as sandbox:
        pushed = [
            images.push_image(sandbox.url, f"sim/app{i % 4}", f"v{i}", layers=1) for i in range(12)
        ]
        fragile = pushed[0]
        lost = fragile.layer_digests[0]
        data = faults.blob_data_path(sandbox.root, lost)
        kept = tmp_path / "kept-layer"
        shutil.copyfile(data, kept)

        store = Store(
            tmp_path / "state.sqlite", max_pushes=100, max_probes=10, resolved_retention=3 * 3600.0
        )
        queue = PushQueue(index_debounce=0.0, clock=clock, monotonic=clock)
        registry = open_registry(sandbox.host, concurrency=8)
        watcher = Watcher(
            sandbox.host,
            lambda: registry,
            store,
            queue,
            WatchOptions(push_workers=1, walk_concurrency=4, probe_interval=0),
            clock=clock,
        )
        app = App(watcher, store, queue, HttpOptions(token="t", probe_interval=3600.0), clock)
        baseline = 0
        tracemalloc.start()
        try:
            for n in range(PUSHES):
                clock.now += 60.0
                if n % 40 == 0:  # break the layer, then mend it 20 pushes later
                    data.unlink(missing_ok=True)
                elif n % 40 == 20:
                    shutil.copyfile(kept, data)
                image = pushed[n % len(pushed)]
                event = PushEvent(
                    image.repo, image.digest, image.tag, KIND_IMAGE, None, "distribution"
                )
                assert queue.offer(event) == "queued"
                job = queue.take(timeout=0)
                assert job is not None
                watcher.verify_push(job, registry)
                if n % PROBE_EVERY == PROBE_EVERY - 1:
                    assert watcher.run_probe(registry) is not None
                if n % 50 == 0:
                    assert render(app.collector)
                    assert app.page_html("")
                    assert app.findings_json("")
                if n == WARM_UP:
                    gc.collect()
                    baseline = tracemalloc.get_traced_memory()[0]
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            registry.close()
        growth = current - baseline
        print(f"\nheap after warm-up {baseline} B, at the end {current} B, peak {peak} B")
        assert growth < ALLOWED_GROWTH_BYTES, f"heap grew by {growth} B over the run"
        assert store.push_count() == 100
        assert len(store.recent_probes(1000)) == 10
        # Broken and mended every 40 pushes (40 simulated minutes): 3 hours of resolved
        # findings at most is kept, plus the one open now (if any).
        assert len(store.resolved_findings(10_000)) <= 3 * 60 // 40 + 1
        assert len(store.open_findings()) <= 1
        _, total = store.tag_states()
        assert total == len(pushed)
        store.close()
