"""Raw samples and the one pure function that turns them into statistics.

Modelled on optimum-benchmark's ``Latency.from_values`` and vLLM's
``calculate_metrics_for_embeddings``: every measurement is kept as a :class:`Sample`
(value, success, error); :func:`summarize` is the only place percentiles are computed.
Failures are counted in ``Summary.failures``; they are never dropped silently and never
turned into 0.

Methods (stated once, here):

* Percentiles: ``numpy.percentile`` with its default ``method="linear"`` (type 7 of
  Hyndman & Fan: for sorted x[0..n-1], position h = (n-1)·q/100, value
  x[floor h] + (h - floor h)·(x[floor h + 1] - x[floor h])).
* stdev: sample standard deviation (ddof=1), ``None`` when fewer than 2 successes.
* ``Summary.ci95_low/high``: percentile-bootstrap 95% interval of the **median**
  (2000 resamples, fixed seed 0, so the same samples always give the same interval);
  ``None`` when fewer than 2 successes. The median is the headline latency figure, so
  its interval is the one reported next to it.
* :func:`ratio_with_spread`: ratio of medians control/treatment with a percentile
  bootstrap 95% interval, the two groups resampled independently (seeded). For many samples
  (latency calls); with a handful the bootstrap of a median can only return observed values,
  and its "interval" is the range of the worst and best sample.
* :func:`ratio_of_few`: for a few whole passes (throughput at the best setting): ratio of
  geometric means with Welch's t interval on the log values (Welch-Satterthwaite degrees of
  freedom, ``scipy.stats.t``), exponentiated -- valid for n >= 2 per group, as wide as n says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default; named so reports can quote it
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
_CI_LEVEL = 95.0
_BOOTSTRAP_CHUNK_CELLS = 4_000_000  # resample rows × n per chunk, bounds memory


@dataclass(frozen=True)
class Sample:
    """One raw measurement in the unit the caller chose (e.g. ms).

    A success has ``ok=True`` and a finite ``value``; a failure has ``ok=False``,
    ``value=None`` and the error text.
    """

    value: float | None
    ok: bool
    error: str | None = None

    @classmethod
    def success(cls, value: float) -> Sample:
        return cls(value=float(value), ok=True, error=None)

    @classmethod
    def failure(cls, error: str) -> Sample:
        return cls(value=None, ok=False, error=error)


@dataclass(frozen=True)
class Summary:
    """Statistics of the successful samples; ``failures`` counts the rest.

    All statistics are ``None`` when ``count == 0``. ``ci95_low``/``ci95_high`` bound
    the median (percentile bootstrap, see module docstring).
    """

    count: int
    failures: int
    mean: float | None
    stdev: float | None
    min: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    ci95_low: float | None
    ci95_high: float | None


@dataclass(frozen=True)
class RatioSummary:
    """``ratio = median(control) / median(treatment)`` with a bootstrap 95% interval.

    With latencies and control = the baseline (Ollama), treatment = the candidate
    (native), ``ratio > 1`` reads "treatment is ratio× faster".
    """

    ratio: float
    ci95_low: float
    ci95_high: float
    control_median: float
    treatment_median: float
    n_control: int
    n_treatment: int
    resamples: int
    seed: int


@dataclass(frozen=True)
class Throughput:
    items: int
    tokens: int | None
    wall_s: float
    items_per_s: float
    tokens_per_s: float | None


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The project's one percentile definition (numpy linear interpolation)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method=PERCENTILE_METHOD))


def _checked_values(samples: Sequence[Sample]) -> tuple[np.ndarray, int]:
    values: list[float] = []
    failures = 0
    for index, sample in enumerate(samples):
        if not sample.ok:
            if sample.value is not None:
                raise ValueError(f"sample {index}: failed sample carries a value ({sample.value!r})")
            failures += 1
            continue
        if sample.value is None or not math.isfinite(sample.value):
            raise ValueError(f"sample {index}: successful sample needs a finite value, got {sample.value!r}")
        values.append(float(sample.value))
    return np.asarray(values, dtype=np.float64), failures


def _bootstrap_medians(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Medians of ``resamples`` with-replacement resamples of ``values`` (chunked)."""
    n = values.size
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    out = np.empty(resamples, dtype=np.float64)
    done = 0
    while done < resamples:
        rows = min(rows_per_chunk, resamples - done)
        idx = rng.integers(0, n, size=(rows, n))
        out[done : done + rows] = np.median(values[idx], axis=1)
        done += rows
    return out


def _interval(estimates: np.ndarray) -> tuple[float, float]:
    tail = (100.0 - _CI_LEVEL) / 2.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail], method=PERCENTILE_METHOD)
    return float(low), float(high)


def summarize(samples: Sequence[Sample]) -> Summary:
    """Statistics of ``samples`` (pure; deterministic)."""
    values, failures = _checked_values(samples)
    count = int(values.size)
    if count == 0:
        return Summary(count=0, failures=failures, mean=None, stdev=None, min=None, p50=None,
                       p95=None, p99=None, max=None, ci95_low=None, ci95_high=None)
    p50, p95, p99 = (float(x) for x in np.percentile(values, [50, 95, 99], method=PERCENTILE_METHOD))
    if count >= 2:
        stdev: float | None = float(np.std(values, ddof=1))
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        ci_low, ci_high = _interval(_bootstrap_medians(values, rng, BOOTSTRAP_RESAMPLES))
    else:
        stdev, ci_low, ci_high = None, None, None
    return Summary(
        count=count,
        failures=failures,
        mean=float(np.mean(values)),
        stdev=stdev,
        min=float(values.min()),
        p50=p50,
        p95=p95,
        p99=p99,
        max=float(values.max()),
        ci95_low=ci_low,
        ci95_high=ci_high,
    )


def _positive_values(name: str, values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D sequence of values")
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name}: values must be finite and > 0 (pass successful samples only)")
    return arr


def ratio_with_spread(
    control: Sequence[float],
    treatment: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> RatioSummary:
    """Ratio of medians control/treatment and its percentile-bootstrap 95% interval.

    Each group is resampled with replacement independently ``resamples`` times from one
    ``numpy.random.default_rng(seed)`` (control first, then treatment), so the result
    is a pure function of its arguments.
    """
    c = _positive_values("control", control)
    t = _positive_values("treatment", treatment)
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    c_med = float(np.median(c))
    t_med = float(np.median(t))
    rng = np.random.default_rng(seed)
    c_boot = _bootstrap_medians(c, rng, resamples)
    t_boot = _bootstrap_medians(t, rng, resamples)
    low, high = _interval(c_boot / t_boot)
    return RatioSummary(
        ratio=c_med / t_med,
        ci95_low=low,
        ci95_high=high,
        control_median=c_med,
        treatment_median=t_med,
        n_control=int(c.size),
        n_treatment=int(t.size),
        resamples=resamples,
        seed=seed,
    )


@dataclass(frozen=True)
class FewRatio:
    """``ratio = geomean(numerator) / geomean(denominator)`` with a Welch t 95% interval."""

    ratio: float
    ci95_low: float | None  # None: no spread across the passes, so no interval can be estimated
    ci95_high: float | None
    n_numerator: int
    n_denominator: int
    method: str = "Welch t on log values, exponentiated"
    sd_log_numerator: float = 0.0  # sample stdev of the log values: what passes_to_clear needs
    sd_log_denominator: float = 0.0


def geometric_mean(values: Sequence[float]) -> float:
    """Of positive values (texts/s of whole passes): the mean a ratio of few is built from."""
    return float(np.exp(np.log(_positive_values("values", values)).mean()))


def ratio_of_few(numerator: Sequence[float], denominator: Sequence[float]) -> FewRatio:
    """Ratio of geometric means and its 95% interval, for a few positive values per group
    (e.g. texts/s of whole passes): Welch's t interval of the difference of mean logs."""
    from scipy import stats as scipy_stats

    a = np.log(_positive_values("numerator", numerator))
    b = np.log(_positive_values("denominator", denominator))
    if a.size < 2 or b.size < 2:
        raise ValueError("need at least 2 values per group for an interval")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:  # identical passes (timer resolution, a fake): no spread to build an interval from
        return FewRatio(math.exp(diff), None, None, int(a.size), int(b.size), "no spread across passes: no interval")
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))  # Welch-Satterthwaite
    half = float(scipy_stats.t.ppf(0.975, df)) * math.sqrt(va + vb)
    return FewRatio(math.exp(diff), math.exp(diff - half), math.exp(diff + half), int(a.size), int(b.size),
                    sd_log_numerator=float(a.std(ddof=1)), sd_log_denominator=float(b.std(ddof=1)))


def passes_to_clear(sd_log_a: float, sd_log_b: float, distance_log: float, start: int = 2,
                    most: int = 10_000) -> int | None:
    """Passes per side after which Welch's 95 % interval of a ratio of few would no longer reach
    a threshold `distance_log` away from the ratio (log units), if the ratio and each side's
    spread across passes (sample stdev of the log pass rates) hold: the standard error shrinks as
    1/sqrt(n) and the Welch-Satterthwaite degrees of freedom grow with n. None when even `most`
    passes would not do (the ratio sits on the threshold). Counting from `start` (today's passes).
    """
    from scipy import stats as scipy_stats

    va, vb = sd_log_a**2, sd_log_b**2
    if distance_log <= 0 or va + vb == 0:
        return None
    n = max(start, 2)
    while n <= most:
        se2 = (va + vb) / n
        df = se2**2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
        if float(scipy_stats.t.ppf(0.975, df)) * math.sqrt(se2) < distance_log:
            return n
        n = n + 1 if n < 100 else int(n * 1.1)
    return None


def throughput(items: int, tokens: int | None, wall_s: float) -> Throughput:
    """Items (and tokens, when known) per second of wall time."""
    if not (wall_s > 0 and math.isfinite(wall_s)):
        raise ValueError(f"wall_s must be a positive finite number of seconds, got {wall_s!r}")
    if items < 0 or (tokens is not None and tokens < 0):
        raise ValueError("items and tokens must be non-negative")
    return Throughput(
        items=items,
        tokens=tokens,
        wall_s=float(wall_s),
        items_per_s=items / wall_s,
        tokens_per_s=None if tokens is None else tokens / wall_s,
    )
