"""Two bench runs side by side (e.g. before/after an Ollama upgrade): B/A ratio per metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.analyse.figures import SetFigures, all_figures


@dataclass(frozen=True)
class MetricRow:
    backend: str
    text_set: str
    metric: str
    a: float | None
    b: float | None
    lower_is_better: bool

    @property
    def ratio(self) -> float | None:
        """b / a; None where either side was not measured."""
        if self.a in (None, 0) or self.b is None:
            return None
        return self.b / self.a


def headline_metrics(f: SetFigures) -> dict[str, tuple[float | None, bool]]:
    best = f.best_throughput
    top = max(f.concurrency, key=lambda c: c.callers, default=None)
    return {
        "single p50 ms": (f.single_ms.p50 if f.single_ms else None, True),
        "single p95 ms": (f.single_ms.p95 if f.single_ms else None, True),
        "batch p50 ms": (f.batch_ms.p50 if f.batch_ms else None, True),
        "best texts/s": (best.texts_per_s if best else None, False),
        f"req/s at {top.callers if top else '?'} callers": (top.requests_per_s if top else None, False),
    }


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[MetricRow]:
    """Rows for every (backend, text set) present in both runs."""
    figures_a = {(f.backend, f.text_set): f for f in all_figures(a)}
    rows = []
    for f_b in all_figures(b):
        f_a = figures_a.get((f_b.backend, f_b.text_set))
        if f_a is None:
            continue
        metrics_a = headline_metrics(f_a)
        for metric, (value_b, lower) in headline_metrics(f_b).items():
            value_a = metrics_a.get(metric, (None, lower))[0]
            rows.append(MetricRow(f_b.backend, f_b.text_set, metric, value_a, value_b, lower))
    return rows
