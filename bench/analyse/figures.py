"""Figures derived from bench.json's raw samples: the one place the summary table, the
verdict and `compare` get their numbers from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.analyse.stats import Sample, Summary, summarize
from bench.measure.batching import capped_counts, token_budget_batches

# Scenarios whose calls never wait behind another call: there, caller wall minus the backend's
# own time is what the wrapper costs. A call in the concurrency scenario also waits behind the
# other callers (one worker thread, one Ollama runner); that wait is queueing, not wrapper cost,
# and the concurrency table shows it.
SEQUENTIAL_SCENARIOS = ("single", "batch", "throughput")


def samples_of(measurement: dict[str, Any]) -> tuple[Sample, ...]:
    return tuple(Sample(**s) for s in measurement["samples"])


def ok_values(measurement: dict[str, Any]) -> list[float]:
    return [s["value"] for s in measurement["samples"] if s["ok"]]


@dataclass(frozen=True)
class ThroughputPoint:
    """One throughput setting over the whole set: batches of a fixed count (batch_size) or of at
    most `token_budget` padded tokens (bench/measure/batching.py); exactly one of the two is set.

    A setting has one whole-set pass, or more at the backend's best setting (params "repeat");
    rates are the median over the deciding passes (the repeats where there are any),
    `pass_rates` each deciding pass's own.
    """

    batch_size: int | None
    token_budget: int | None
    order: str | None  # None: input order; "length": longest first (token budgets always are)
    texts: int  # texts in one pass (the set minus the texts left out, see `excluded`)
    excluded: int  # texts of the set left out (per-text failures)
    token_counts: tuple[int, ...]  # tokenizer counts of the texts a pass embedded, in set order
    wall_s: float | None  # median wall time of the complete passes; None if none completed
    texts_per_s: float | None  # texts / wall of each complete pass, median over passes
    tokens_per_s: float | None
    pass_rates: tuple[float, ...]  # texts/s of each complete deciding pass (the repeats, if any), in run order
    per_batch_texts_per_s: Summary  # spread across the batches of every pass
    per_batch_rates: tuple[float, ...]  # the raw per-batch texts/s behind that summary
    failures: int  # failed batches over all passes

    @property
    def label(self) -> str:
        if self.token_budget is not None:
            return f"≤{self.token_budget:,} tokens"
        return f"batch {self.batch_size:,}" + (" (length-sorted)" if self.order == "length" else "")

    @property
    def passes(self) -> int:
        """Deciding passes (the repeats at the best setting, else the one pass)."""
        return len(self.pass_rates)

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
    wrapper_overhead_ms: Summary | None  # from SEQUENTIAL_SCENARIOS only

    @property
    def best_throughput(self) -> ThroughputPoint | None:
        """The runner's best setting: the one it passed over most often (it repeats the setting
        whose first pass was fastest), then the fastest. Picking the fastest single pass instead
        would let one lucky pass beat the median of three."""
        complete = [p for p in self.throughput if p.texts_per_s is not None]
        return max(complete, key=lambda p: (p.passes, p.texts_per_s)) if complete else None


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


def working_counts(measurement: dict[str, Any], set_token_counts: Sequence[int]) -> list[int]:
    """Token counts of the texts this measurement ran on (the set minus its `excluded`)."""
    excluded = set(measurement.get("excluded", ()))
    return [n for i, n in enumerate(set_token_counts) if i not in excluded]


def setting_of(params: dict[str, Any]) -> dict[str, Any]:
    """A throughput pass's setting: its params without the repeat number."""
    return {k: v for k, v in params.items() if k != "repeat"}


def _pass_complete(m: dict[str, Any]) -> bool:
    return m["wall_s"] > 0 and bool(m["samples"]) and all(s["ok"] for s in m["samples"])


def best_first_pass(throughput: Sequence[dict[str, Any]], set_texts: int) -> dict[str, Any] | None:
    """The setting whose first complete pass embedded the set fastest; None if none completed."""
    first = [m for m in throughput if "repeat" not in m["params"] and _pass_complete(m)]
    if not first:
        return None
    best = max(first, key=lambda m: (set_texts - len(m.get("excluded", ()))) / m["wall_s"])
    return dict(best["params"])


def throughput_point(passes: Sequence[dict[str, Any]], set_token_counts: Sequence[int],
                     max_tokens: int | None) -> ThroughputPoint:
    """The passes of one setting (its first, then its repeats) as one point.

    Rates come from the repeats when there are any: the first pass chose this setting as the
    best, so counting it again would favour it (a lucky first pass is why it won).
    """
    first = passes[0]
    deciding = [m for m in passes if m["params"].get("repeat")] or [first]
    counts = working_counts(first, set_token_counts)
    capped = capped_counts(counts, max_tokens)
    texts, tokens = len(counts), sum(counts)
    per_batch: list[Sample] = []
    pass_rates, walls, failures = [], [], 0
    for m in passes:
        samples = samples_of(m)
        failures += sum(1 for s in samples if not s.ok)
        sizes = batch_sizes_of(m["params"], len(samples), texts, capped) or []
        per_batch += [Sample(n / (s.value / 1000.0), True) if s.ok and s.value else Sample(None, False, s.error)
                      for n, s in zip(sizes, samples)]
        if m in deciding and _pass_complete(m):
            pass_rates.append(texts / m["wall_s"])
            walls.append(m["wall_s"])
    wall = float(np.median(walls)) if walls else None
    return ThroughputPoint(
        batch_size=first["params"].get("batch_size"),
        token_budget=first["params"].get("token_budget"),
        order=first["params"].get("order"),
        texts=texts,
        excluded=len(set_token_counts) - texts,
        token_counts=tuple(counts),
        wall_s=wall,
        texts_per_s=float(np.median(pass_rates)) if pass_rates else None,
        tokens_per_s=float(np.median([tokens / w for w in walls])) if walls else None,
        pass_rates=tuple(pass_rates),
        per_batch_texts_per_s=summarize(per_batch),
        per_batch_rates=tuple(s.value for s in per_batch if s.ok),
        failures=failures,
    )


def throughput_points(throughput: Sequence[dict[str, Any]], set_token_counts: Sequence[int],
                      max_tokens: int | None) -> tuple[ThroughputPoint, ...]:
    """One point per setting, its repeats folded in, sorted by ThroughputPoint.sort_key."""
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for m in sorted(throughput, key=lambda m: m["params"].get("repeat", 0)):
        by_setting.setdefault(repr(sorted(setting_of(m["params"]).items())), []).append(m)
    points = (throughput_point(passes, set_token_counts, max_tokens) for passes in by_setting.values())
    return tuple(sorted(points, key=lambda p: p.sort_key))


def set_figures(payload: dict[str, Any], backend: str, text_set: str) -> SetFigures:
    ms = [m for m in payload["measurements"] if m["backend"] == backend and m["text_set"] == text_set]
    by = {kind: [m for m in ms if m["scenario"] == kind] for kind in ("single", "batch", "throughput", "concurrency")}
    workload_set = next(s for s in payload["workload"]["sets"] if s["name"] == text_set)
    description = (payload["backends"].get(backend) or {}).get("description") or {}
    single = by["single"][0] if by["single"] else None
    batch = by["batch"][0] if by["batch"] else None
    overheads = [o for m in ms if m["scenario"] in SEQUENTIAL_SCENARIOS for o in m.get("overhead_ms", [])]
    return SetFigures(
        backend=backend,
        text_set=text_set,
        single_ms=summarize(samples_of(single)) if single else None,
        single_samples_ms=tuple(ok_values(single)) if single else (),
        batch_ms=summarize(samples_of(batch)) if batch else None,
        batch_size=batch["params"]["batch_size"] if batch else None,
        throughput=throughput_points(by["throughput"], workload_set["token_counts"], description.get("max_tokens")),
        concurrency=tuple(sorted(
            (ConcurrencyPoint(m["params"]["callers"], m["params"]["requests"],
                              sum(1 for s in m["samples"] if s["ok"]) / m["wall_s"] if m["wall_s"] else 0.0,
                              summarize(samples_of(m))) for m in by["concurrency"]),
            key=lambda p: p.callers)),
        wrapper_overhead_ms=summarize([Sample(o, True) for o in overheads]) if overheads else None,
    )


def excluded_for(screening: Sequence[dict[str, Any]], backend: str, text_set: str) -> tuple[int, ...]:
    """Texts left out of `backend`'s measurements on `text_set` (bench.json's "screening"): every
    text some backend could not embed, so all sides are timed on the same texts -- except the
    failures of a backend that could embed none of the set (it is not measured there, and must
    not take the set away from the others) -- plus, always, its own."""
    excluded: set[int] = set()
    for record in screening:
        if record["text_set"] != text_set:
            continue
        failed = {f["index"] for f in record["failures"]}
        every_text = record.get("texts", 0) > 0 and len(failed) == record["texts"]
        if record["backend"] == backend or not every_text:
            excluded |= failed
    return tuple(sorted(excluded))


def text_failures(payload: dict[str, Any], backend: str, text_set: str) -> list[dict[str, Any]]:
    """The per-text failures screening found for this backend on this set (TextFailure as dicts)."""
    return [f for r in payload.get("screening", ()) if (r["backend"], r["text_set"]) == (backend, text_set)
            for f in r["failures"]]


def backend_names(payload: dict[str, Any]) -> list[str]:
    return list(payload["config"]["backends"])


def text_set_names(payload: dict[str, Any]) -> list[str]:
    return [s["name"] for s in payload["workload"]["sets"]]


def all_figures(payload: dict[str, Any]) -> Iterable[SetFigures]:
    for backend in backend_names(payload):
        for text_set in text_set_names(payload):
            yield set_figures(payload, backend, text_set)
