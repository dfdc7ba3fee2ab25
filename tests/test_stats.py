"""bench.analyse.stats against independent references: numpy, the statistics module, hand arithmetic."""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import pytest

from bench.analyse.stats import (
    RatioSummary,
    Sample,
    Summary,
    percentile,
    ratio_with_spread,
    summarize,
    throughput,
)


def _ok(values):
    return [Sample.success(v) for v in values]


def test_percentiles_hand_computed_small_case():
    # sorted x = [1, 2, 3, 4, 10], n = 5, linear interpolation at h = (n-1)·q/100:
    #   p50: h = 2.00 -> x[2] = 3
    #   p95: h = 3.80 -> 4 + 0.80·(10-4) = 8.8
    #   p99: h = 3.96 -> 4 + 0.96·(10-4) = 9.76
    s = summarize(_ok([10, 1, 4, 2, 3]))
    assert s.p50 == pytest.approx(3.0)
    assert s.p95 == pytest.approx(8.8)
    assert s.p99 == pytest.approx(9.76)
    assert (s.min, s.max) == (1.0, 10.0)
    assert s.mean == pytest.approx(4.0)  # 20 / 5
    # sample variance: deviations -3,-2,-1,0,6 -> squares 9+4+1+0+36 = 50; 50/4 = 12.5
    assert s.stdev == pytest.approx(math.sqrt(12.5))


def test_percentile_even_count_hand_case():
    # [1, 2, 3, 4]: p50 at h = 1.5 -> 2 + 0.5·1 = 2.5; p95 at h = 2.85 -> 3 + 0.85 = 3.85
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([4, 1, 3, 2], 95) == pytest.approx(3.85)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summary_matches_numpy_and_statistics_on_random_data(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(mean=3.0, sigma=0.5, size=257)
    s = summarize(_ok(values))
    assert s.count == 257 and s.failures == 0
    for q, got in [(50, s.p50), (95, s.p95), (99, s.p99)]:
        assert got == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert s.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert s.stdev == pytest.approx(statistics.stdev(values), rel=1e-9)
    assert s.min == values.min() and s.max == values.max()
    assert s.ci95_low <= s.p50 <= s.ci95_high


def test_failures_counted_never_dropped_or_zeroed():
    samples = _ok([5.0, 7.0, 9.0]) + [Sample.failure("timeout"), Sample.failure("HTTP 500")]
    s = summarize(samples)
    assert s.count == 3
    assert s.failures == 2
    assert s.min == 5.0  # a failure turned into 0 would show here
    assert s.mean == pytest.approx(7.0)
    assert s.p50 == pytest.approx(7.0)


def test_all_failures_gives_none_statistics():
    s = summarize([Sample.failure("boom"), Sample(value=None, ok=False, error="x")])
    assert s.count == 0 and s.failures == 2
    stats = {f.name: getattr(s, f.name) for f in dataclasses.fields(Summary)}
    assert all(v is None for name, v in stats.items() if name not in {"count", "failures"})


def test_empty_input():
    s = summarize([])
    assert s.count == 0 and s.failures == 0 and s.mean is None


def test_single_sample_has_no_stdev_or_interval():
    s = summarize(_ok([3.0]))
    assert s.count == 1 and s.p50 == 3.0 and s.p99 == 3.0
    assert s.stdev is None and s.ci95_low is None and s.ci95_high is None


@pytest.mark.parametrize(
    "bad",
    [Sample(value=None, ok=True), Sample(value=float("nan"), ok=True), Sample(value=1.0, ok=False, error="x")],
)
def test_inconsistent_samples_rejected(bad):
    with pytest.raises(ValueError):
        summarize([bad])


def test_summary_is_deterministic():
    values = np.random.default_rng(7).normal(50, 5, size=100)
    assert summarize(_ok(values)) == summarize(_ok(values))


def test_ratio_with_spread_deterministic_and_sane():
    rng = np.random.default_rng(11)
    control = rng.lognormal(np.log(23.0), 0.1, size=200)  # e.g. Ollama ms
    treatment = rng.lognormal(np.log(10.0), 0.1, size=180)  # e.g. native ms
    r1 = ratio_with_spread(control, treatment)
    r2 = ratio_with_spread(list(control), list(treatment))
    assert isinstance(r1, RatioSummary)
    assert r1 == r2
    assert r1.ratio == pytest.approx(np.median(control) / np.median(treatment))
    assert r1.ci95_low < r1.ratio < r1.ci95_high
    assert 2.0 < r1.ci95_low and r1.ci95_high < 2.7
    assert (r1.n_control, r1.n_treatment, r1.resamples, r1.seed) == (200, 180, 2000, 0)
    r3 = ratio_with_spread(control, treatment, seed=1)
    assert r3.ratio == r1.ratio and (r3.ci95_low, r3.ci95_high) != (r1.ci95_low, r1.ci95_high)


def test_ratio_hand_case_constant_groups():
    # medians 30 and 10 -> ratio 3; every resample of a constant group has the same median
    r = ratio_with_spread([30.0] * 5, [10.0] * 4)
    assert (r.ratio, r.ci95_low, r.ci95_high) == (3.0, 3.0, 3.0)


@pytest.mark.parametrize("control,treatment", [([], [1.0]), ([1.0], [0.0]), ([float("nan")], [1.0])])
def test_ratio_rejects_bad_input(control, treatment):
    with pytest.raises(ValueError):
        ratio_with_spread(control, treatment)


def test_throughput():
    t = throughput(items=100, tokens=5000, wall_s=2.0)
    assert t.items_per_s == 50.0 and t.tokens_per_s == 2500.0
    assert throughput(10, None, 4.0).tokens_per_s is None
    with pytest.raises(ValueError):
        throughput(1, 1, 0.0)


def test_ratio_of_few_is_welch_on_logs_as_scipy_computes_it():
    """Independent reference: scipy's own Welch test (ttest_ind, equal_var=False) on the logs."""
    import math

    from scipy import stats as scipy_stats

    from bench.analyse.stats import ratio_of_few

    native, ollama = [300.0, 310.0, 290.0, 305.0], [100.0, 104.0, 98.0]
    r = ratio_of_few(native, ollama)
    reference = scipy_stats.ttest_ind(np.log(native), np.log(ollama), equal_var=False).confidence_interval(0.95)
    assert r.ratio == pytest.approx(math.exp(np.log(native).mean() - np.log(ollama).mean()))
    assert r.ci95_low == pytest.approx(math.exp(reference.low))
    assert r.ci95_high == pytest.approx(math.exp(reference.high))
    assert r.ci95_low < 3.0 < r.ci95_high


def test_ratio_of_few_does_not_let_one_bad_pass_pin_the_interval_to_it():
    """Three passes with one outlier: the bootstrap of medians gives [worst/best, best/worst];
    the t interval is wide but centred on the geometric means, and says so by its width."""
    from bench.analyse.stats import ratio_of_few

    r = ratio_of_few([300.0, 300.0, 90.0], [100.0, 100.0, 100.0])
    assert r.ratio == pytest.approx((300 * 300 * 90) ** (1 / 3) / 100)
    assert r.ci95_low < 1.0 and r.ci95_high > 4.0  # honest: three passes cannot settle this
    same = ratio_of_few([200.0, 200.0], [100.0, 100.0])  # identical passes: no spread, no interval
    assert same.ratio == pytest.approx(2.0) and same.ci95_low is None and same.ci95_high is None
    with pytest.raises(ValueError):
        ratio_of_few([1.0], [1.0, 2.0])


@pytest.mark.parametrize("sd_native, sd_ollama", [(0.2, 0.02), (0.15, 0.001), (0.1, 0.1), (0.03, 0.3)])
def test_passes_to_clear_is_the_first_n_whose_welch_interval_clears_recomputed_by_ratio_of_few(sd_native, sd_ollama):
    """Independent reference: build passes with exactly these spreads at each n and ask ratio_of_few."""
    import math

    from bench.analyse.stats import passes_to_clear, ratio_of_few

    def passes(n: int, mean_log: float, sd_log: float) -> np.ndarray:
        z = np.linspace(-1.0, 1.0, n)
        return np.exp(mean_log + sd_log * (z - z.mean()) / z.std(ddof=1))

    ratio, threshold = 2.3, 2.0
    first = next(n for n in range(2, 2000)
                 if ratio_of_few(passes(n, math.log(230.0), sd_native), passes(n, math.log(100.0), sd_ollama)).ci95_low
                 > threshold)
    assert passes_to_clear(sd_native, sd_ollama, math.log(ratio / threshold)) == first
