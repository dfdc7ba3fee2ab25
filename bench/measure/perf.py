"""Harness overhead: the bench's native backend against a bare `model.encode` loop, same texts.

A benchmark, not a test: `make perf` / `python -m bench perf`. Each round times one whole
pass over the texts both ways:

  bare     for each batch: model.encode(batch, batch_size=len(batch), convert_to_numpy=True,
           normalize_embeddings=False) on the calling thread, the model being the backend's
           own loaded SentenceTransformer (same weights, dtype, device);
  harness  for each batch: `await scenarios.timed_embed(backend, batch)`, exactly as the bench
           calls it (worker-thread hop, device sync, Sample bookkeeping), after the same
           untimed `backend.prepare` the bench makes (token counts).

Pass wall = perf_counter around the whole loop. The two alternate with the order swapped
every round (AB, BA, AB, ...), so drift (thermal, caches, other load) falls on both
equally; one untimed pass of each comes first. The figure is
ratio = median(harness walls) / median(bare walls) with the percentile-bootstrap 95%
interval of stats.ratio_with_spread; 1.02 means the harness adds 2%.
The roofline rows use the same walls against both ceilings (bench/analyse/roofline.py): the probe's
when probe.json measured this kind of device, else measured now with the probe's own checks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.analyse.roofline import (
    Ceilings,
    ModelShape,
    RooflineRow,
    precision_of,
    probe_ceilings,
    roofline_row,
    vendor_figures,
)
from bench.analyse.stats import RatioSummary


@dataclass(frozen=True)
class PerfResult:
    backend: str
    device: str
    dtype: str
    texts: int
    tokens: int  # tokenizer counts, capped at the model's max_seq_length
    batch_size: int
    rounds: int
    order: str  # how the two were interleaved
    bare_s: tuple[float, ...]  # per round, whole-pass wall
    harness_s: tuple[float, ...]
    ratio: RatioSummary  # control = harness, treatment = bare: median(harness) / median(bare)
    roofline: tuple[RooflineRow, ...]
    roofline_notes: tuple[str, ...]  # the model, the ceilings and where they came from, assumptions


def batches_of(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices covering n items, `batch_size` each (the last may be short)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]


def bare_pass(model: Any, texts: Sequence[str], batch_size: int) -> float:
    """Seconds for one pass of plain model.encode calls (device synchronised by the copy to numpy)."""
    started = time.perf_counter()
    for part in batches_of(len(texts), batch_size):
        chunk = list(texts[part])
        model.encode(chunk, batch_size=len(chunk), convert_to_numpy=True, normalize_embeddings=False,
                     show_progress_bar=False)
    return time.perf_counter() - started


async def harness_pass(backend: Any, texts: Sequence[str], batch_size: int) -> float:
    """Seconds for one pass through the bench's own timed call; a failed call ends the benchmark."""
    from bench.measure.scenarios import timed_embed

    started = time.perf_counter()
    for part in batches_of(len(texts), batch_size):
        call = await timed_embed(backend, list(texts[part]))
        if not call.sample.ok:
            raise RuntimeError(f"{backend.name}: embed failed during the perf run: {call.sample.error}")
    return time.perf_counter() - started


async def measure_overhead(backend: Any, texts: Sequence[str], batch_size: int,
                           rounds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(bare walls, harness walls), one each per round, order swapped every round. Backend loaded."""
    model = backend.model
    bare_pass(model, texts, batch_size)  # untimed: first-call effects
    await harness_pass(backend, texts, batch_size)
    bare: list[float] = []
    harness: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            bare.append(bare_pass(model, texts, batch_size))
            harness.append(await harness_pass(backend, texts, batch_size))
        else:
            harness.append(await harness_pass(backend, texts, batch_size))
            bare.append(bare_pass(model, texts, batch_size))
    return tuple(bare), tuple(harness)


def ceilings_measured_here(device: str) -> dict[str, Any]:
    """A probe.json-shaped record of the ceilings measured now, on `device`, with the probe's own checks
    (quick sizes): for `bench perf` when probe.json has none for the device the perf runs on."""
    import dataclasses

    from probe.checks.ceilings import check_ceilings
    from probe.checks.kernels import check_kernels
    from probe.registry import ProbeContext

    on_gpu = str(device).startswith("cuda")
    ctx = ProbeContext(model="", ollama_host="", ollama_model="", device=device if on_gpu else None, quick=True)
    checks = [check_ceilings(ctx), *([check_kernels(ctx)] if on_gpu else [])]
    return {"config": {"device": ctx.device}, "checks": [dataclasses.asdict(c) for c in checks]}


def perf_ceilings(probe: dict[str, Any] | None, device: str) -> tuple[Ceilings, str]:
    """The probe's ceilings when it measured this kind of device, else ones measured now; and where from."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    recorded = probe_ceilings(probe)
    if recorded is not None and recorded.device == kind and recorded.bandwidth_gbs is not None:
        return recorded, "probe.json"
    return probe_ceilings(ceilings_measured_here(device)), f"measured now on {kind} (no probe.json ceilings for it)"


def perf_roofline(model_config: dict[str, Any], token_counts: Sequence[int], calls: int, bare_s: Sequence[float],
                  harness_s: Sequence[float], description: dict[str, Any], ceilings: Ceilings | None,
                  device_name: str | None) -> tuple[RooflineRow, ...]:
    """Roofline rows for the median bare and harness pass; empty without a readable model config."""
    import statistics

    shape = ModelShape.from_config(model_config)
    if shape is None:
        return ()
    vendor = vendor_figures(device_name) if ceilings is not None and ceilings.device == "cuda" else None
    return tuple(
        roofline_row(backend=label, text_set="perf texts", setting="median pass", token_counts=token_counts,
                     calls=calls, wall_s=statistics.median(walls), shape=shape, precision=precision_of(description),
                     ceilings=ceilings, vendor=vendor)
        for label, walls in (("bare model.encode", bare_s), ("bench harness", harness_s))
    )


async def run_perf(backend: Any, texts: Sequence[str], *, batch_size: int, rounds: int,
                   model_config: dict[str, Any], probe: dict[str, Any] | None) -> PerfResult:
    """Load the backend, measure, unload. `backend` must expose its SentenceTransformer as `.model`."""
    from bench.analyse.stats import ratio_with_spread
    from bench.measure.batching import capped_counts
    from bench.report.roofline_view import ceilings_note, model_note

    if rounds < 2:
        raise ValueError("rounds must be >= 2 for a spread")
    await backend.load()
    try:
        if getattr(backend, "model", None) is None:
            raise ValueError(f"{backend.name}: perf needs a native backend (one with a loaded .model)")
        uncapped = backend.count_tokens(texts)
        await backend.prepare(texts, uncapped)
        counts = capped_counts(uncapped, backend.max_seq_length)
        bare, harness = await measure_overhead(backend, texts, batch_size, rounds)
        description = backend.describe()
    finally:
        await backend.unload()
    device_name = description.get("device_name") or ((probe or {}).get("facts") or {}).get("device_name")
    ceilings, source = perf_ceilings(probe, str(description.get("device")))
    rows = perf_roofline(model_config, counts, len(batches_of(len(texts), batch_size)), bare, harness, description,
                         ceilings, device_name)
    notes = (model_note(ModelShape.from_config(model_config), model_config, "read for this run"),
             f"ceilings from {source}: " + ceilings_note(ceilings), *dict.fromkeys(r.note for r in rows if r.note))
    return PerfResult(
        backend=backend.name,
        device=str(description.get("device")),
        dtype=backend.dtype,
        texts=len(texts),
        tokens=sum(counts),
        batch_size=batch_size,
        rounds=rounds,
        order="AB, BA, AB, ... (bare first in even rounds), after one untimed pass of each",
        bare_s=bare,
        harness_s=harness,
        ratio=ratio_with_spread(harness, bare),
        roofline=rows,
        roofline_notes=notes,
    )


def perf_texts(sets: Sequence[Any], per_set: int) -> list[str]:
    """The first `per_set` texts of each workload set, in set order."""
    return [t for s in sets for t in list(s.texts)[:per_set]]
