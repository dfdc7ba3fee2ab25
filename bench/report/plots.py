"""PNG plots next to verdict.md, from bench.json's raw samples (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.analyse.figures import all_figures, text_set_names
from bench.measure.standin_model import recorded_weights_label
from probe.view import format_value


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display in containers or CI
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plain_numbers():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: format_value(float(value)))


# Two tick labels closer than this fraction of the axis height overlap (about one label's height
# on a 4-inch panel).
MIN_TICK_GAP = 0.06
ROUND_STEPS = (1.0, 2.0, 3.0, 5.0)  # per decade, where they do not crowd a box's tick


def _round_sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits - 1}e}")


def _log_gap(a: float, b: float, low: float, high: float) -> float:
    return abs(math.log10(a) - math.log10(b)) / (math.log10(high) - math.log10(low))


def log_ticks(boxes: Sequence[tuple[float, float, float]], low: float, high: float) -> list[float]:
    """Tick values for a log axis from `low` to `high` (both > 0) so every box has a labelled
    tick inside it.

    `boxes` are (q1, median, q3). A box no tick falls inside yet gets the roundest value inside
    it (its median at 1, 2, 3... significant digits), chosen away from the ticks already kept.
    Then round steps (1, 2, 3, 5 per decade) fill the axis where they do not crowd a kept tick.
    """
    ticks: list[float] = []

    def crowded(value: float) -> bool:
        return any(_log_gap(value, t, low, high) < MIN_TICK_GAP for t in ticks)

    for q1, median, q3 in sorted(boxes, key=lambda b: b[1]):
        if any(q1 <= t <= q3 for t in ticks):
            continue
        candidates = [c for c in (_round_sig(median, d) for d in (1, 2, 3, 4)) if q1 <= c <= q3] or [median]
        ticks.append(next((c for c in candidates if not crowded(c)), candidates[0]))
    decade = math.floor(math.log10(low))
    while 10.0**decade <= high:
        for step in ROUND_STEPS:
            value = step * 10.0**decade
            if low <= value <= high and not crowded(value):
                ticks.append(value)
        decade += 1
    return sorted(ticks)


def _set_panels(bench: dict[str, Any], figures: Sequence[Any]):
    """(figure, [(axes, text set, that set's figures)]): one panel per text set that has any;
    None when `figures` is empty."""
    if not figures:
        return None
    sets = [s for s in text_set_names(bench) if any(f.text_set == s for f in figures)]
    fig, axes = _pyplot().subplots(1, len(sets), figsize=(4.5 * len(sets), 4), squeeze=False)
    return fig, [(ax, s, [f for f in figures if f.text_set == s]) for ax, s in zip(axes[0], sets)]


def latency_figure(bench: dict[str, Any]):
    """Single-text latency distribution per backend, one panel per text set (log axis); None
    when nothing was measured."""
    panels = _set_panels(bench, [f for f in all_figures(bench) if f.single_samples_ms])
    if panels is None:
        return None
    from matplotlib.ticker import FixedLocator, NullFormatter

    fig, per_set = panels
    for ax, text_set, rows in per_set:
        ax.boxplot([f.single_samples_ms for f in rows], showfliers=True)
        ax.set_xticks(range(1, len(rows) + 1), [f"{f.backend}\nn={len(f.single_samples_ms)}" for f in rows],
                      fontsize=8)
        ax.set_title(f"single-text latency: {text_set}")
        ax.set_ylabel("ms (log scale)")
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        boxes = [tuple(float(v) for v in np.percentile(f.single_samples_ms, (25, 50, 75))) for f in rows]
        ax.yaxis.set_major_locator(FixedLocator(log_ticks(boxes, low, high)))
        ax.yaxis.set_major_formatter(_plain_numbers())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(low, high)
        ax.grid(axis="y", which="major", alpha=0.3)
    return fig


def latency_plot(bench: dict[str, Any], path: Path) -> bool:
    fig = latency_figure(bench)
    return fig is not None and _save(_pyplot(), fig, path)


def _setting_tick(point) -> str:
    """x-axis label of a throughput setting: the batch size, or the token budget on two lines."""
    if point.token_budget is not None:
        return f"≤{point.token_budget:,}\ntokens"
    return f"{point.batch_size:,}" + ("\nsorted" if point.order == "length" else "")


def throughput_figure(bench: dict[str, Any]):
    """Whole-set texts/s per backend at every swept setting (batch sizes, then token budgets),
    one panel per text set; None when no pass completed."""
    panels = _set_panels(bench, [f for f in all_figures(bench) if any(p.texts_per_s for p in f.throughput)])
    if panels is None:
        return None
    fig, per_set = panels
    for ax, text_set, rows in per_set:
        settings = sorted({p.sort_key: p for f in rows for p in f.throughput}.items())
        position = {key: i for i, (key, _) in enumerate(settings)}
        for f in rows:
            done = [p for p in f.throughput if p.texts_per_s]
            line = [p for p in done if p.token_budget is None and p.order is None]
            drawn = ax.plot([position[p.sort_key] for p in line], [p.texts_per_s for p in line], marker="o",
                            label=f.backend)
            colour = drawn[0].get_color()
            others = [p for p in done if p not in line]
            ax.plot([position[p.sort_key] for p in others], [p.texts_per_s for p in others], marker="D",
                    linestyle="none", color=colour)
            best = f.best_throughput
            if best is not None:
                ax.plot([position[best.sort_key]], [best.texts_per_s], marker="o", markersize=13,
                        markerfacecolor="none", color=colour)
        budgets = [position[key] for key, p in settings if p.token_budget is not None]
        if budgets and budgets[0] > 0:
            ax.axvline(budgets[0] - 0.5, color="grey", linestyle=":", linewidth=1)  # batch sizes | budgets
        ax.set_xticks(range(len(settings)), [_setting_tick(p) for _, p in settings], fontsize=8)
        ax.set_xlim(-0.5, len(settings) - 0.5)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(_plain_numbers())
        ax.set_title(f"throughput: {text_set}")
        ax.set_xlabel("batch size (texts) or token budget (padded tokens)")
        ax.set_ylabel("texts/s (whole set / wall)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, title="circled: best", title_fontsize=7)
    return fig


def throughput_plot(bench: dict[str, Any], path: Path) -> bool:
    fig = throughput_figure(bench)
    return fig is not None and _save(_pyplot(), fig, path)


def cosine_plot(bench: dict[str, Any], control: str | None, treatment: str | None, path: Path) -> bool:
    records = [q for q in bench["quality"] if {q["control"], q["treatment"]} == {control, treatment}]
    if not records:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for q in records:
        values = [float(v) for v in q["per_text_cosine"]]
        finite = [v for v in values if math.isfinite(v)]
        ax.hist(finite, bins=40, alpha=0.6, label=f"{q['text_set']} (n={len(finite)})")
    label = recorded_weights_label(bench)
    ax.set_title(f"per-text cosine: {treatment} vs {control}" + (f"\n({label})" if label else ""))
    ax.set_xlabel("cosine")
    ax.set_ylabel("texts")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def render_plots(bench: dict[str, Any], control: str | None, treatment: str | None,
                 out_dir: Path) -> tuple[tuple[str, str], ...]:
    """Write the plots that have data; return (title, file name) for the ones written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    if latency_plot(bench, out_dir / "latency.png"):
        made.append(("Single-text latency distribution", "latency.png"))
    if throughput_plot(bench, out_dir / "throughput.png"):
        made.append(("Throughput by batch size and token budget", "throughput.png"))
    if cosine_plot(bench, control, treatment, out_dir / "cosine.png"):
        made.append(("Per-text cosine, native vs Ollama", "cosine.png"))
    return tuple(made)
