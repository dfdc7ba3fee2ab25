"""Embedding agreement between two backends: pure functions over numpy arrays.

``a`` and ``b`` are (n_texts, dim) arrays for the same texts in the same order, one per
backend. Everything is computed in float64 after L2-normalising rows.

Non-finite handling: a row with NaN/inf, or with zero norm, cannot be normalised. It
is never "fixed" (no zero fill, no epsilon): :func:`l2_normalise` turns it into a row of
NaN so every value derived from it is NaN and :func:`nonfinite_rows` still finds it.
Summaries count such rows (``nonfinite``) and compute their statistics over the rest.

Percentiles use numpy's default linear interpolation (see :mod:`bench.analyse.stats`).
Neighbour ranking breaks ties deterministically: equal cosine, lower index first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from bench.analyse.stats import PERCENTILE_METHOD

_ROW_CHUNK = 1024  # rows of the similarity matrix held at once in neighbour search


@dataclass(frozen=True)
class CosineSummary:
    """Per-text cosine between backends. ``count``: finite cosines; ``nonfinite``: NaN ones."""

    count: int
    nonfinite: int
    mean: float | None
    min: float | None
    p1: float | None
    p5: float | None
    p50: float | None


@dataclass(frozen=True)
class SpearmanResult:
    """Spearman rank correlation of pair cosines under backend a vs backend b.

    ``n_pairs``: pairs used; ``n_excluded``: sampled pairs dropped from the correlation
    because a cosine was non-finite under either backend (counted, not hidden).
    """

    rho: float
    pvalue: float
    n_pairs: int
    n_excluded: int
    seed: int


@dataclass(frozen=True)
class AgreementSummary:
    """Top-k neighbour overlap |A∩B|/k per text; statistics over texts with finite rows."""

    k: int
    count: int
    nonfinite: int
    mean: float | None
    min: float | None
    p5: float | None


def _as_matrix(name: str, vectors: np.ndarray) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (n_texts, dim) array, got shape {arr.shape}")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a2 = _as_matrix("a", a)
    b2 = _as_matrix("b", b)
    if a2.shape[0] != b2.shape[0]:
        raise ValueError(f"a and b must hold the same texts: {a2.shape[0]} vs {b2.shape[0]} rows")
    return a2, b2


def nonfinite_rows(vectors: np.ndarray) -> list[int]:
    """Indices of rows holding any NaN or ±inf."""
    arr = _as_matrix("vectors", vectors)
    return [int(i) for i in np.flatnonzero(~np.all(np.isfinite(arr), axis=1))]


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64). Non-finite or zero-norm rows become all NaN."""
    arr = _as_matrix("vectors", vectors)
    finite = np.all(np.isfinite(arr), axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], arr, 0.0), axis=1)
    good = finite & (norms > 0)
    out = np.full(arr.shape, np.nan, dtype=np.float64)
    out[good] = arr[good] / norms[good, None]
    return out


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between row i of a and row i of b; NaN where either row is unusable.

    The two backends may return different dimensions only if they are different models,
    which is an error here.
    """
    a2, b2 = _same_shape(a, b)
    if a2.shape[1] != b2.shape[1]:
        raise ValueError(f"dimension mismatch: {a2.shape[1]} vs {b2.shape[1]}")
    cos = np.einsum("ij,ij->i", l2_normalise(a2), l2_normalise(b2))
    return np.clip(cos, -1.0, 1.0)  # NaN stays NaN


def summarize_cosine(cosines: np.ndarray) -> CosineSummary:
    """CosineSummary of a vector from :func:`paired_cosine`."""
    cos = np.asarray(cosines, dtype=np.float64).ravel()
    finite = cos[np.isfinite(cos)]
    nonfinite = int(cos.size - finite.size)
    if finite.size == 0:
        return CosineSummary(count=0, nonfinite=nonfinite, mean=None, min=None, p1=None, p5=None, p50=None)
    p1, p5, p50 = (float(x) for x in np.percentile(finite, [1, 5, 50], method=PERCENTILE_METHOD))
    return CosineSummary(
        count=int(finite.size),
        nonfinite=nonfinite,
        mean=float(finite.mean()),
        min=float(finite.min()),
        p1=p1,
        p5=p5,
        p50=p50,
    )


def _pair_from_linear(p: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map linear indices into the row-major strict upper triangle of an n×n matrix to (i, j).

    Same order as ``np.triu_indices(n, 1)`` without materialising all n(n-1)/2 pairs.
    """
    p = p.astype(np.int64)
    total = n * (n - 1) // 2
    # Rows counted from the end: row i owns (n-1-i) pairs; r = n-1-i.
    rem = total - 1 - p  # index counted from the last pair
    r = ((np.sqrt(8.0 * rem + 1.0) - 1.0) / 2.0).astype(np.int64)  # r(r+1)/2 <= rem
    r += ((r + 1) * (r + 2) // 2 <= rem).astype(np.int64)  # guard float rounding
    r -= (r * (r + 1) // 2 > rem).astype(np.int64)
    i = n - 2 - r
    start_i = i * (2 * n - i - 1) // 2  # linear index of (i, i+1)
    j = p - start_i + i + 1
    return i, j


def sample_pairs(n_texts: int, n_pairs: int, seed: int) -> np.ndarray:
    """A fixed set of distinct pairs (i, j), i < j, as an (m, 2) int64 array sorted by (i, j).

    ``m = min(n_pairs, n_texts·(n_texts-1)/2)``: all pairs when fewer exist than asked
    for. Drawn without replacement by ``numpy.random.default_rng(seed).choice``, so the
    same (n_texts, n_pairs, seed) always gives the same pairs.
    """
    if n_texts < 2:
        raise ValueError(f"need at least 2 texts to form pairs, got {n_texts}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    total = n_texts * (n_texts - 1) // 2
    if n_pairs >= total:
        linear = np.arange(total, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        linear = np.sort(rng.choice(total, size=n_pairs, replace=False)).astype(np.int64)
    i, j = _pair_from_linear(linear, n_texts)
    return np.stack([i, j], axis=1)


def pair_cosines(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each (i, j) pair within one backend's vectors (NaN for unusable rows)."""
    unit = l2_normalise(vectors)
    return np.einsum("ij,ij->i", unit[pairs[:, 0]], unit[pairs[:, 1]])


def pairwise_similarity_spearman(a: np.ndarray, b: np.ndarray, n_pairs: int, seed: int) -> SpearmanResult:
    """Do the backends rank text-pair similarities the same way?

    Samples a fixed set of pairs (:func:`sample_pairs`), computes each pair's cosine under
    a and under b, and correlates the two lists with ``scipy.stats.spearmanr``. Pairs
    with a non-finite cosine under either backend are excluded and counted.
    """
    a2, b2 = _same_shape(a, b)
    pairs = sample_pairs(a2.shape[0], n_pairs, seed)
    cos_a = pair_cosines(a2, pairs)
    cos_b = pair_cosines(b2, pairs)
    keep = np.isfinite(cos_a) & np.isfinite(cos_b)
    used = int(keep.sum())
    if used < 2:
        rho, pvalue = float("nan"), float("nan")
    else:
        result = scipy_stats.spearmanr(cos_a[keep], cos_b[keep])
        rho, pvalue = float(result.statistic), float(result.pvalue)
    return SpearmanResult(rho=rho, pvalue=pvalue, n_pairs=used, n_excluded=int(pairs.shape[0] - used), seed=seed)


def top_k_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k most cosine-similar other rows.

    Itself excluded; ordered by cosine descending, equal cosines by index ascending
    (stable argsort on the negated score). Unusable rows never appear as neighbours:
    a slot with no usable candidate left holds -1, and the row of an unusable text is
    all -1.
    """
    unit = l2_normalise(vectors)
    n = unit.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and n_texts-1 ({n - 1}), got {k}")
    usable = np.all(np.isfinite(unit), axis=1)
    filled = np.where(usable[:, None], unit, 0.0)
    out = np.full((n, k), -1, dtype=np.int64)
    for start in range(0, n, _ROW_CHUNK):
        stop = min(n, start + _ROW_CHUNK)
        scores = filled[start:stop] @ filled.T
        scores[:, ~usable] = -np.inf
        scores[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not itself
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        chosen = np.take_along_axis(scores, order, axis=1)
        out[start:stop] = np.where(np.isneginf(chosen), -1, order)
    out[~usable] = -1
    return out


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> np.ndarray:
    """Per text, |top-k under a ∩ top-k under b| / k; NaN where the text is unusable in a or b."""
    a2, b2 = _same_shape(a, b)
    na = top_k_neighbours(a2, k)
    nb = top_k_neighbours(b2, k)
    overlap = np.full(a2.shape[0], np.nan, dtype=np.float64)
    for row in range(a2.shape[0]):
        if na[row, 0] < 0 or nb[row, 0] < 0:
            continue
        common = np.intersect1d(na[row], nb[row])
        overlap[row] = int(np.count_nonzero(common >= 0)) / k
    return overlap


def neighbour_agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> AgreementSummary:
    """Summary of :func:`neighbour_overlap` (mean, min, p5 over usable texts)."""
    overlap = neighbour_overlap(a, b, k)
    finite = overlap[np.isfinite(overlap)]
    nonfinite = int(overlap.size - finite.size)
    if finite.size == 0:
        return AgreementSummary(k=k, count=0, nonfinite=nonfinite, mean=None, min=None, p5=None)
    return AgreementSummary(
        k=k,
        count=int(finite.size),
        nonfinite=nonfinite,
        mean=float(finite.mean()),
        min=float(finite.min()),
        p5=float(np.percentile(finite, 5, method=PERCENTILE_METHOD)),
    )
