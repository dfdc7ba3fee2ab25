"""The measured scenarios. Each takes any EmbeddingBackend and returns a Measurement;
none knows a backend by name.

Timing: perf_counter around the awaited call, i.e. what the application waits for,
including the HTTP body read and JSON decode for Ollama and the worker-thread hop for
native (native synchronises the device inside the call before returning).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.backends.base import BackendError, BackendOutOfMemory, EmbeddingBackend, EmbedResponse
from bench.results import Measurement
from bench.stats import Sample

Advance = Callable[[int], None]


def _no_progress(_: int) -> None:
    return None


@dataclass(frozen=True)
class TimedCall:
    sample: Sample
    response: EmbedResponse | None
    overhead_ms: float | None


async def timed_embed(backend: EmbeddingBackend, texts: Sequence[str], raise_oom: bool = False) -> TimedCall:
    """One call, timed; a backend error becomes a failed sample.

    With raise_oom, out-of-memory propagates so the throughput sweep can halve the batch.
    """
    started = time.perf_counter()
    try:
        response = await backend.embed(texts)
    except BackendOutOfMemory:
        if raise_oom:
            raise
        return TimedCall(Sample(value=None, ok=False, error="out of device memory"), None, None)
    except BackendError as err:
        return TimedCall(Sample(value=None, ok=False, error=str(err)), None, None)
    latency_ms = (time.perf_counter() - started) * 1000.0
    overhead = None
    if response.backend_time_s is not None:
        overhead = latency_ms - response.backend_time_s * 1000.0
    return TimedCall(Sample(value=latency_ms, ok=True), response, overhead)


async def warm_up(backend: EmbeddingBackend, texts: Sequence[str], calls: int) -> None:
    """Untimed calls so first-call effects (allocator, kernels, caches) are not measured."""
    for i in range(calls):
        await timed_embed(backend, [texts[i % len(texts)]])


def _measurement(backend, text_set, scenario, params, calls, items, tokens, wall_s, notes=()):
    return Measurement(
        backend=backend.name,
        text_set=text_set,
        scenario=scenario,
        params=params,
        samples=tuple(c.sample for c in calls),
        items_per_sample=items,
        tokens_per_sample=tokens,
        wall_s=wall_s,
        overhead_ms=tuple(c.overhead_ms for c in calls if c.overhead_ms is not None),
        notes=tuple(notes),
    )


async def single_text_latency(backend, text_set: str, texts: Sequence[str], token_counts: Sequence[int],
                              calls: int, advance: Advance = _no_progress) -> Measurement:
    """Sequential single-text calls, cycling through the set."""
    started = time.perf_counter()
    results = []
    for i in range(calls):
        results.append(await timed_embed(backend, [texts[i % len(texts)]]))
        advance(1)
    used = [token_counts[i % len(texts)] for i in range(calls)]
    return _measurement(backend, text_set, "single", {"calls": calls}, results, 1,
                        float(np.mean(used)), time.perf_counter() - started)


async def batch_latency(backend, text_set: str, texts: Sequence[str], token_counts: Sequence[int],
                        batch_size: int, repeats: int, advance: Advance = _no_progress) -> Measurement:
    """The ticket's 'time for 100 embeddings': one call with `batch_size` texts, repeated."""
    batch = list(texts[:batch_size])
    notes = []
    if len(batch) < batch_size:
        notes.append(f"text set has {len(batch)} texts, fewer than the batch size {batch_size}")
    started = time.perf_counter()
    results = []
    for _ in range(repeats):
        results.append(await timed_embed(backend, batch))
        advance(1)
    return _measurement(backend, text_set, "batch", {"batch_size": len(batch)}, results, len(batch),
                        float(sum(token_counts[: len(batch)])), time.perf_counter() - started, notes)


@dataclass(frozen=True)
class SweepPass:
    measurement: Measurement
    vectors: np.ndarray | None  # the whole set's vectors from this pass, in input order
    reported_tokens: tuple[int | None, ...]  # per batch, what the backend reported


async def throughput_pass(backend, text_set: str, texts: Sequence[str], token_counts: Sequence[int],
                          batch_size: int, advance: Advance = _no_progress) -> SweepPass:
    """Embed the whole set in batches of `batch_size`; one sample per batch, wall for the set.

    Raises BackendOutOfMemory so the caller can halve the batch size.
    """
    started = time.perf_counter()
    calls, vectors, reported = [], [], []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        call = await timed_embed(backend, chunk, raise_oom=True)
        calls.append(call)
        reported.append(call.response.prompt_tokens if call.response else None)
        vectors.append(call.response.vectors if call.response else None)
        advance(len(chunk))
    wall_s = time.perf_counter() - started
    complete = all(v is not None for v in vectors)
    measurement = _measurement(
        backend, text_set, "throughput", {"batch_size": batch_size}, calls, batch_size,
        float(sum(token_counts)) / max(1, len(calls)), wall_s,
    )
    return SweepPass(measurement, np.concatenate(vectors) if complete and vectors else None, tuple(reported))


async def concurrent_callers(backend, text_set: str, texts: Sequence[str], token_counts: Sequence[int],
                             callers: int, requests: int, advance: Advance = _no_progress) -> Measurement:
    """`callers` async tasks share `requests` single-text calls, as a RAG app's requests would."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[TimedCall] = []

    async def caller() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results.append(await timed_embed(backend, [texts[i % len(texts)]]))
            advance(1)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall_s = time.perf_counter() - started
    used = [token_counts[i % len(texts)] for i in range(requests)]
    return _measurement(backend, text_set, "concurrency", {"callers": callers, "requests": requests},
                        results, 1, float(np.mean(used)), wall_s)
