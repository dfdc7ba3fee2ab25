"""The verdict's plots: a labelled tick inside every latency box; token budgets in the throughput plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.analyse.figures import all_figures
from bench.report.plots import (
    MIN_TICK_GAP,
    latency_figure,
    log_ticks,
    throughput_figure,
)

BENCH = Path(__file__).parent / "fixtures" / "results" / "conditional" / "bench.json"


@pytest.fixture(scope="module")
def bench() -> dict:
    return json.loads(BENCH.read_text())


@pytest.mark.parametrize("boxes, low, high", [
    ([(1.36, 1.37, 1.39), (4.6, 4.72, 5.0)], 1.3, 6.0),  # a tight box far from any 1-2-5 value
    ([(9.1, 9.2, 9.3), (9.5, 9.8, 10.2), (15.1, 15.4, 15.6)], 8.0, 17.0),  # the "9 and 10" axis
    ([(0.52, 0.54, 0.57), (180.0, 223.0, 260.0)], 0.4, 400.0),  # three decades apart
    ([(3.0, 3.0, 3.0)], 2.5, 3.5),  # every sample equal
])
def test_every_box_gets_a_tick_inside_it(boxes, low, high):
    ticks = log_ticks(boxes, low, high)
    for q1, _median, q3 in boxes:
        assert any(q1 <= t <= q3 for t in ticks), (q1, q3, ticks)
    assert all(low <= t <= high for t in ticks)
    span = math.log10(high) - math.log10(low)
    gaps = [(math.log10(b) - math.log10(a)) / span for a, b in zip(ticks, ticks[1:])]
    assert all(g >= MIN_TICK_GAP for g in gaps), (ticks, gaps)  # labels do not overlap here


def test_round_values_fill_the_axis_between_boxes():
    ticks = log_ticks([(1.36, 1.37, 1.39)], 1.0, 100.0)
    assert {2.0, 5.0, 10.0, 20.0, 50.0} <= set(ticks)


def test_the_rendered_latency_plot_labels_every_box(bench):
    fig = latency_figure(bench)
    rows = [f for f in all_figures(bench) if f.single_samples_ms]
    for ax in fig.axes:
        text_set = ax.get_title().removeprefix("single-text latency: ")
        low, high = ax.get_ylim()
        labels = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
        shown = [v for v, text in labels.items() if low <= v <= high and text]
        for f in (f for f in rows if f.text_set == text_set):
            q1, q3 = np.percentile(f.single_samples_ms, (25, 75))
            assert any(q1 <= v <= q3 for v in shown), (text_set, f.backend, q1, q3, shown)
        assert all("e" not in labels[v] for v in shown)


def test_the_throughput_plot_shows_the_token_budget_settings(bench):
    fig = throughput_figure(bench)
    for ax in fig.axes:
        text_set = ax.get_title().removeprefix("throughput: ")
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert "≤4,096\ntokens" in ticks, ticks
        plotted = {round(float(y), 6) for line in ax.get_lines() for y in line.get_ydata()}
        for f in (f for f in all_figures(bench) if f.text_set == text_set):
            budget = next(p for p in f.throughput if p.token_budget is not None)
            assert round(budget.texts_per_s, 6) in plotted, (text_set, f.backend)
