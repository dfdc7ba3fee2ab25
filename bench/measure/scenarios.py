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
from typing import Any

import numpy as np

from bench.analyse.stats import Sample
from bench.backends.base import (
    BackendError,
    BackendOutOfMemory,
    EmbeddingBackend,
    EmbedResponse,
)
from bench.measure.batching import length_sorted_order, token_budget_batches
from bench.results import Measurement

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
    except BackendOutOfMemory as err:
        if raise_oom:
            raise
        # Worded so probe.failures reads it as memory: a capacity note, not a defect of the backend.
        return TimedCall(Sample(value=None, ok=False, error=f"out of memory on the device ({err})"), None, None)
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
                          batch_size: int, advance: Advance = _no_progress,
                          length_sorted: bool = False) -> SweepPass:
    """Embed the whole set in batches of `batch_size`; one sample per batch, wall for the set.

    Batches are cut in input order, as an application sending its texts as they come would;
    with `length_sorted` they are cut from the texts sorted longest first (less padding per
    batch; params gain {"order": "length"}). Vectors come back in input order either way.
    Raises BackendOutOfMemory so the caller can halve the batch size.
    """
    order = length_sorted_order(token_counts) if length_sorted else list(range(len(texts)))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    params: dict[str, Any] = {"batch_size": batch_size, **({"order": "length"} if length_sorted else {})}
    return await _batched_pass(backend, text_set, texts, token_counts, batches, params, batch_size, advance)


async def token_budget_pass(backend, text_set: str, texts: Sequence[str], token_counts: Sequence[int],
                            max_tokens: int, advance: Advance = _no_progress) -> SweepPass:
    """Embed the whole set in batches of at most `max_tokens` padded tokens (longest first).

    `token_counts` should be what the backend runs (capped at its max tokens, see
    batching.capped_counts): the plan is `token_budget_batches(token_counts, max_tokens)`,
    which analysis recomputes from the same counts to know each batch's size. Recorded as
    scenario "throughput" with params {"token_budget": max_tokens}.
    Raises BackendOutOfMemory so the caller can halve the budget.
    """
    batches = token_budget_batches(token_counts, max_tokens)
    sizes = [len(b) for b in batches]
    note = (f"token budget {max_tokens}: {len(batches)} batches of {min(sizes, default=0)}–{max(sizes, default=0)} "
            "texts, longest first; a text over the budget runs alone")
    mean_batch = max(1, round(len(texts) / max(1, len(batches))))
    return await _batched_pass(backend, text_set, texts, token_counts, batches, {"token_budget": max_tokens},
                               mean_batch, advance, notes=(note,))


async def _batched_pass(backend, text_set, texts, token_counts, batches: list[list[int]], params: dict[str, Any],
                        items_per_sample: int, advance: Advance, notes: Sequence[str] = ()) -> SweepPass:
    """Run `batches` (index lists) in order, one timed call each; vectors reassembled in input order."""
    started = time.perf_counter()
    calls, parts, reported = [], [], []
    for batch in batches:
        chunk = [texts[i] for i in batch]
        call = await timed_embed(backend, chunk, raise_oom=True)
        calls.append(call)
        reported.append(call.response.prompt_tokens if call.response else None)
        parts.append(call.response.vectors if call.response else None)
        advance(len(chunk))
    wall_s = time.perf_counter() - started
    vectors = None
    if parts and all(v is not None for v in parts):
        stacked = np.concatenate(parts)
        vectors = np.empty_like(stacked)
        vectors[np.concatenate([np.asarray(b, dtype=np.int64) for b in batches])] = stacked
    measurement = _measurement(
        backend, text_set, "throughput", params, calls, items_per_sample,
        float(sum(token_counts)) / max(1, len(calls)), wall_s, notes,
    )
    return SweepPass(measurement, vectors, tuple(reported))


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
