"""The wrapper-overhead figure counts only calls that did not wait behind other callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

import bench.measure.runner
from bench.analyse.figures import SEQUENTIAL_SCENARIOS, set_figures
from bench.analyse.stats import Sample, summarize
from bench.backends.base import EmbedResponse, LoadReport
from bench.config import PROFILES, BenchConfig

pytestmark = pytest.mark.slow

SERVICE_S = 0.01  # each call holds the one worker for 10 ms


class OneWorkerBackend:
    """Like the native backend: every call runs on one worker thread, and the backend's own time
    is measured on that thread, so a call queued behind others has a long wall but not a long
    backend time."""

    name = "one-worker"

    def __init__(self) -> None:
        self.executor: ThreadPoolExecutor | None = None

    async def load(self) -> LoadReport:  # loaded twice: to screen the texts, then to time them
        self.executor = ThreadPoolExecutor(max_workers=1)
        return LoadReport(wall_s=0.0, reported_load_s=None, reported_source="test", cold=True,
                          includes="test: nothing loaded")

    async def prepare(self, texts: Sequence[str], token_counts: Sequence[int]) -> None:
        return None

    def _work(self, texts: Sequence[str]) -> EmbedResponse:
        started = time.perf_counter()
        time.sleep(SERVICE_S)
        return EmbedResponse(np.ones((len(texts), 4), dtype=np.float32), None, time.perf_counter() - started)

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._work, list(texts))

    async def unload(self) -> None:
        self.executor.shutdown(wait=True)

    async def memory(self):
        return []

    def describe(self) -> dict:
        return {"kind": "native", "device": "cpu", "model": "test", "dtype": "float32", "max_tokens": None}


def overhead_figures(tmp_path, monkeypatch, small_model_path, callers: tuple[int, ...]):
    monkeypatch.setitem(bench.measure.runner.BACKENDS, "one-worker", lambda settings: OneWorkerBackend())
    profile = replace(PROFILES["smoke"], model=small_model_path, set_sizes={"short": 6}, warmup_calls=1,
                      single_latency_calls=8, batch_latency_repeats=2, batch_sizes=(1, 3), token_budgets=(),
                      concurrency_levels=callers, concurrency_requests=32, quality_pairs=5)
    results = tmp_path / f"callers-{'-'.join(map(str, callers))}"
    config = BenchConfig(profile=profile, backends=("one-worker",), results_dir=results,
                         ollama_host="http://127.0.0.1:9", timeout_s=5.0)
    payload = asyncio.run(bench.measure.runner.run_bench(config)).payload()
    return payload, set_figures(payload, "one-worker", "short")


def test_overhead_does_not_grow_with_concurrent_callers(tmp_path, monkeypatch, small_model_path):
    alone_payload, alone = overhead_figures(tmp_path, monkeypatch, small_model_path, (1,))
    crowd_payload, crowd = overhead_figures(tmp_path, monkeypatch, small_model_path, (1, 16))

    # With 16 callers, a call's wall minus the backend's time is mostly its wait in the queue
    # (up to 15 calls of 10 ms ahead of it): counted as overhead, it would read as tens of ms.
    queued = next(m for m in crowd_payload["measurements"]
                  if m["scenario"] == "concurrency" and m["params"]["callers"] == 16)
    assert queued_p50(queued) > 5 * SERVICE_S * 1000

    # The figure is made of the sequential calls only, whatever the concurrency levels were.
    sequential = [o for m in crowd_payload["measurements"] if m["scenario"] in SEQUENTIAL_SCENARIOS
                  for o in m["overhead_ms"]]
    assert crowd.wrapper_overhead_ms.count == len(sequential) == alone.wrapper_overhead_ms.count
    assert crowd.wrapper_overhead_ms.p95 < SERVICE_S * 1000  # a thread hop, not a queue
    assert crowd.wrapper_overhead_ms.p95 < queued_p50(queued) / 10
    assert alone.wrapper_overhead_ms.p95 < SERVICE_S * 1000
    assert alone_payload["status"] == crowd_payload["status"] == "complete"


def queued_p50(measurement: dict) -> float:
    return summarize([Sample(o, True) for o in measurement["overhead_ms"]]).p50
