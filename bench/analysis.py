"""Figures derived from bench.json's raw samples: the one place the summary table, the
verdict and `compare` get their numbers from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.batching import capped_counts, token_budget_batches
from bench.stats import Sample, Summary, summarize


def samples_of(measurement: dict[str, Any]) -> tuple[Sample, ...]:
    return tuple(Sample(**s) for s in measurement["samples"])


def ok_values(measurement: dict[str, Any]) -> list[float]:
    return [s["value"] for s in measurement["samples"] if s["ok"]]


@dataclass(frozen=True)
class ThroughputPoint:
    """One whole-set throughput pass: batches of a fixed count (batch_size) or of at most
    `token_budget` padded tokens (bench/batching.py); exactly one of the two is set."""

    batch_size: int | None
    token_budget: int | None
    order: str | None  # None: input order; "length": longest first (token budgets always are)
    texts: int
    wall_s: float | None  # the pass's wall time; None if any batch failed
    texts_per_s: float | None  # whole set / wall of the pass; None if any batch failed
    tokens_per_s: float | None
    per_batch_texts_per_s: Summary  # spread across the pass's batches
    per_batch_rates: tuple[float, ...]  # the raw per-batch texts/s behind that summary
    failures: int

    @property
    def label(self) -> str:
        if self.token_budget is not None:
            return f"≤{self.token_budget} tokens"
        return f"batch {self.batch_size}" + (" (length-sorted)" if self.order == "length" else "")

    @property
    def sort_key(self) -> tuple[int, int, str]:
        """Batch sizes first (input order before sorted), then token budgets, each ascending."""
        if self.token_budget is not None:
            return (1, self.token_budget, "")
        return (0, self.batch_size or 0, self.order or "")


@dataclass(frozen=True)
class ConcurrencyPoint:
    callers: int
    requests: int
    requests_per_s: float
    latency_ms: Summary


@dataclass(frozen=True)
class SetFigures:
    """Everything measured for one backend on one text set."""

    backend: str
    text_set: str
    single_ms: Summary | None
    single_samples_ms: tuple[float, ...]
    batch_ms: Summary | None
    batch_size: int | None
    throughput: tuple[ThroughputPoint, ...]
    concurrency: tuple[ConcurrencyPoint, ...]
    wrapper_overhead_ms: Summary | None

    @property
    def best_throughput(self) -> ThroughputPoint | None:
        complete = [p for p in self.throughput if p.texts_per_s is not None]
        return max(complete, key=lambda p: p.texts_per_s) if complete else None


def batch_sizes_of(params: dict[str, Any], n_samples: int, set_texts: int,
                   capped_token_counts: Sequence[int] | None) -> list[int] | None:
    """Texts per batch of a throughput pass, in run order; None when it cannot be known.

    Fixed batch size: full batches, the last may be short. Token budget: the plan
    batching.token_budget_batches makes from the same capped counts the runner used.
    """
    if "token_budget" in params:
        if capped_token_counts is None:
            return None
        sizes = [len(b) for b in token_budget_batches(capped_token_counts, params["token_budget"])]
        return sizes if len(sizes) == n_samples else None
    size = params["batch_size"]
    return [min(size, set_texts - start) for start in range(0, set_texts, size)][:n_samples]


def throughput_point(m: dict[str, Any], set_tokens: int, set_texts: int,
                     capped_token_counts: Sequence[int] | None = None) -> ThroughputPoint:
    samples = samples_of(m)
    failures = sum(1 for s in samples if not s.ok)
    complete = failures == 0 and m["wall_s"] > 0
    sizes = batch_sizes_of(m["params"], len(samples), set_texts, capped_token_counts) or []
    per_batch = [Sample(n / (s.value / 1000.0), True) if s.ok and s.value else Sample(None, False, s.error)
                 for n, s in zip(sizes, samples)]
    return ThroughputPoint(
        batch_size=m["params"].get("batch_size"),
        token_budget=m["params"].get("token_budget"),
        order=m["params"].get("order"),
        texts=set_texts,
        wall_s=m["wall_s"] if complete else None,
        texts_per_s=set_texts / m["wall_s"] if complete else None,
        tokens_per_s=set_tokens / m["wall_s"] if complete else None,
        per_batch_texts_per_s=summarize(per_batch),
        per_batch_rates=tuple(s.value for s in per_batch if s.ok),
        failures=failures,
    )


def set_figures(payload: dict[str, Any], backend: str, text_set: str) -> SetFigures:
    ms = [m for m in payload["measurements"] if m["backend"] == backend and m["text_set"] == text_set]
    by = {kind: [m for m in ms if m["scenario"] == kind] for kind in ("single", "batch", "throughput", "concurrency")}
    workload_set = next(s for s in payload["workload"]["sets"] if s["name"] == text_set)
    set_tokens = sum(workload_set["token_counts"])
    set_texts = len(workload_set["token_counts"])
    description = (payload["backends"].get(backend) or {}).get("description") or {}
    capped = capped_counts(workload_set["token_counts"], description.get("max_tokens"))
    single = by["single"][0] if by["single"] else None
    batch = by["batch"][0] if by["batch"] else None
    overheads = [o for m in ms for o in m.get("overhead_ms", [])]
    return SetFigures(
        backend=backend,
        text_set=text_set,
        single_ms=summarize(samples_of(single)) if single else None,
        single_samples_ms=tuple(ok_values(single)) if single else (),
        batch_ms=summarize(samples_of(batch)) if batch else None,
        batch_size=batch["params"]["batch_size"] if batch else None,
        throughput=tuple(sorted((throughput_point(m, set_tokens, set_texts, capped) for m in by["throughput"]),
                                key=lambda p: p.sort_key)),
        concurrency=tuple(sorted(
            (ConcurrencyPoint(m["params"]["callers"], m["params"]["requests"],
                              sum(1 for s in m["samples"] if s["ok"]) / m["wall_s"] if m["wall_s"] else 0.0,
                              summarize(samples_of(m))) for m in by["concurrency"]),
            key=lambda p: p.callers)),
        wrapper_overhead_ms=summarize([Sample(o, True) for o in overheads]) if overheads else None,
    )


def backend_names(payload: dict[str, Any]) -> list[str]:
    return list(payload["config"]["backends"])


def text_set_names(payload: dict[str, Any]) -> list[str]:
    return [s["name"] for s in payload["workload"]["sets"]]


def all_figures(payload: dict[str, Any]) -> Iterable[SetFigures]:
    for backend in backend_names(payload):
        for text_set in text_set_names(payload):
            yield set_figures(payload, backend, text_set)
