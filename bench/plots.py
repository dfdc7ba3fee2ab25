"""PNG plots next to verdict.md, from bench.json's raw samples (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.analysis import all_figures, text_set_names


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

    return FuncFormatter(lambda value, _pos: f"{value:g}")


def latency_plot(bench: dict[str, Any], path: Path) -> bool:
    """Single-text latency distribution per backend, one panel per text set."""
    figures = [f for f in all_figures(bench) if f.single_samples_ms]
    if not figures:
        return False
    plt = _pyplot()
    sets = [s for s in text_set_names(bench) if any(f.text_set == s for f in figures)]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 4), squeeze=False)
    for ax, text_set in zip(axes[0], sets):
        rows = [f for f in figures if f.text_set == text_set]
        ax.boxplot([f.single_samples_ms for f in rows], showfliers=True)
        ax.set_xticks(range(1, len(rows) + 1), [f"{f.backend}\nn={len(f.single_samples_ms)}" for f in rows],
                      fontsize=8)
        ax.set_title(f"single-text latency: {text_set}")
        ax.set_ylabel("ms (log scale)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_plain_numbers())
        ax.yaxis.set_minor_formatter(_plain_numbers())
    return _save(plt, fig, path)


def _by_batch_size(points):
    """The input-order batch-size sweep (token-budget and length-sorted passes are in the table)."""
    return [p for p in points if p.batch_size is not None and p.order is None]


def throughput_plot(bench: dict[str, Any], path: Path) -> bool:
    figures = [f for f in all_figures(bench) if any(p.texts_per_s for p in _by_batch_size(f.throughput))]
    if not figures:
        return False
    plt = _pyplot()
    sets = [s for s in text_set_names(bench) if any(f.text_set == s for f in figures)]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 4), squeeze=False)
    for ax, text_set in zip(axes[0], sets):
        for f in (f for f in figures if f.text_set == text_set):
            points = [p for p in _by_batch_size(f.throughput) if p.texts_per_s]
            ax.plot([p.batch_size for p in points], [p.texts_per_s for p in points], marker="o", label=f.backend)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p.batch_size for f in figures for p in _by_batch_size(f.throughput)}))
        ax.xaxis.set_major_formatter(_plain_numbers())
        ax.set_title(f"throughput: {text_set}")
        ax.set_xlabel("batch size")
        ax.set_ylabel("texts/s (whole set / wall)")
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


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
    ax.set_title(f"per-text cosine: {treatment} vs {control}")
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
        made.append(("Throughput vs batch size", "throughput.png"))
    if cosine_plot(bench, control, treatment, out_dir / "cosine.png"):
        made.append(("Per-text cosine, native vs Ollama", "cosine.png"))
    return tuple(made)
