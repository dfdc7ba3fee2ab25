"""bench.analyse.quality on hand vectors and against scipy / plain numpy recomputations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.analyse.quality import (
    AgreementSummary,
    _pair_from_linear,
    l2_normalise,
    neighbour_agreement,
    neighbour_overlap,
    nonfinite_rows,
    paired_cosine,
    pairwise_similarity_spearman,
    sample_pairs,
    summarize_cosine,
    top_k_neighbours,
)

NAN = float("nan")
INF = float("inf")


# ------------------------------------------------------------------ non-finite, normalising


def test_nonfinite_rows():
    v = np.array([[1.0, 2.0], [NAN, 0.0], [0.0, INF], [0.0, 0.0], [-INF, 1.0]])
    assert nonfinite_rows(v) == [1, 2, 4]  # the zero row is finite (l2_normalise flags it)


def test_l2_normalise_flags_bad_rows_instead_of_fixing():
    v = np.array([[3.0, 4.0], [0.0, 0.0], [NAN, 1.0], [0.0, -2.0]])
    unit = l2_normalise(v)
    np.testing.assert_allclose(unit[0], [0.6, 0.8])
    np.testing.assert_allclose(unit[3], [0.0, -1.0])
    assert np.all(np.isnan(unit[1])) and np.all(np.isnan(unit[2]))
    assert nonfinite_rows(unit) == [1, 2]
    assert not np.isnan(v[1]).any()  # input untouched


# ------------------------------------------------------------------ paired cosine


def test_paired_cosine_hand_vectors():
    a = np.array([[1.0, 0.0], [1.0, 2.0], [1.0, 1.0], [1.0, 0.0], [NAN, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 5.0], [2.0, 4.0], [-1.0, -1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    cos = paired_cosine(a, b)
    assert cos[0] == pytest.approx(0.0)  # orthogonal
    assert cos[1] == pytest.approx(1.0)  # same direction, different length
    assert cos[2] == pytest.approx(-1.0)  # opposite
    assert cos[3] == pytest.approx(1 / math.sqrt(2))  # 45 degrees
    assert math.isnan(cos[4]) and math.isnan(cos[5])  # NaN row, zero row


def test_paired_cosine_matches_plain_numpy_on_random_data():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 16)).astype(np.float32)
    b = a + rng.normal(scale=0.1, size=a.shape).astype(np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = [float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a64, b64)]
    np.testing.assert_allclose(paired_cosine(a, b), expected, rtol=1e-10)


def test_paired_cosine_shape_errors():
    with pytest.raises(ValueError):
        paired_cosine(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError):
        paired_cosine(np.ones((3, 4)), np.ones((3, 5)))


def test_cosine_summary():
    # finite values 0.5, 0.9, 1.0, 0.7 (sorted 0.5, 0.7, 0.9, 1.0), one NaN
    #   mean 3.1/4 = 0.775; p50 at h = 1.5 -> 0.8; p5 at h = 0.15 -> 0.5 + 0.15·0.2 = 0.53
    #   p1 at h = 0.03 -> 0.5 + 0.03·0.2 = 0.506
    s = summarize_cosine(np.array([0.5, 0.9, NAN, 1.0, 0.7]))
    assert (s.count, s.nonfinite) == (4, 1)
    assert s.mean == pytest.approx(0.775)
    assert s.min == 0.5
    assert s.p50 == pytest.approx(0.8)
    assert s.p5 == pytest.approx(0.53)
    assert s.p1 == pytest.approx(0.506)
    empty = summarize_cosine(np.array([NAN]))
    assert (empty.count, empty.nonfinite, empty.mean) == (0, 1, None)


# ------------------------------------------------------------------ pair sampling + Spearman


@pytest.mark.parametrize("n", [2, 3, 7, 50, 301])
def test_pair_index_mapping_matches_triu_indices(n):
    i_ref, j_ref = np.triu_indices(n, 1)
    i, j = _pair_from_linear(np.arange(i_ref.size), n)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(j, j_ref)


def test_sample_pairs_fixed_distinct_ordered():
    pairs = sample_pairs(100, 500, seed=42)
    assert pairs.shape == (500, 2)
    assert np.all(pairs[:, 0] < pairs[:, 1]) and pairs.min() >= 0 and pairs.max() < 100
    assert len({tuple(p) for p in pairs.tolist()}) == 500
    np.testing.assert_array_equal(pairs, sample_pairs(100, 500, seed=42))
    assert not np.array_equal(pairs, sample_pairs(100, 500, seed=43))
    # asking for more than exist gives all of them
    assert sample_pairs(5, 1000, seed=0).tolist() == [[i, j] for i in range(5) for j in range(i + 1, 5)]


def test_sample_pairs_large_n_stays_in_range():
    pairs = sample_pairs(100_000, 1000, seed=1)
    assert np.all(pairs[:, 0] < pairs[:, 1]) and pairs.max() < 100_000


def test_spearman_matches_scipy_on_the_sampled_pairs():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(80, 32))
    b = a + rng.normal(scale=0.5, size=a.shape)
    result = pairwise_similarity_spearman(a, b, n_pairs=400, seed=9)
    pairs = sample_pairs(80, 400, seed=9)

    def cos(v, i, j):
        return float(np.dot(v[i], v[j]) / (np.linalg.norm(v[i]) * np.linalg.norm(v[j])))

    ca = [cos(a, i, j) for i, j in pairs]
    cb = [cos(b, i, j) for i, j in pairs]
    ref = scipy_stats.spearmanr(ca, cb)
    assert result.rho == pytest.approx(ref.statistic, abs=1e-12)
    assert result.pvalue == pytest.approx(ref.pvalue, rel=1e-6)
    assert (result.n_pairs, result.n_excluded, result.seed) == (400, 0, 9)
    assert 0.3 < result.rho < 1.0


def _unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_spearman_identical_embeddings_is_one():
    a = np.random.default_rng(0).normal(size=(20, 8))
    assert pairwise_similarity_spearman(a, a.copy(), n_pairs=100, seed=0).rho == pytest.approx(1.0)
    # scaling rows does not change cosines
    assert pairwise_similarity_spearman(a, 3 * a, n_pairs=100, seed=0).rho == pytest.approx(1.0)


def test_spearman_reversed_ranking_is_minus_one():
    # a: angles 0, 10, 30 deg -> pair cosines (0,1)=cos10 > (1,2)=cos20 > (0,2)=cos30
    # b: angles 0, 30, 10 deg -> pair cosines (0,1)=cos30 < (1,2)=cos20 < (0,2)=cos10
    a = np.array([_unit(0), _unit(10), _unit(30)])
    b = np.array([_unit(0), _unit(30), _unit(10)])
    r = pairwise_similarity_spearman(a, b, n_pairs=3, seed=0)
    assert r.rho == pytest.approx(-1.0)
    assert r.n_pairs == 3


def test_spearman_excludes_and_counts_nonfinite_pairs():
    a = np.random.default_rng(1).normal(size=(6, 4))
    b = a.copy()
    b[2] = NAN  # row 2 takes part in 5 of the 15 pairs
    r = pairwise_similarity_spearman(a, b, n_pairs=15, seed=0)
    assert (r.n_pairs, r.n_excluded) == (10, 5)
    assert r.rho == pytest.approx(1.0)


# ------------------------------------------------------------------ neighbour agreement

# Four 2-D points, k = 2. Under b, point 0 = (0,1) has neighbour scores
#   3: (1,1)/√2 -> 0.707,  1: (1,0) -> 0,  2: (-1,0) -> 0   (tie at the cut-off)
# and the tie is broken by index ascending, so its top-2 is [3, 1].
B = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
# a moves point 2 slightly towards point 0: (-1, 0.1).
A = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.1], [1.0, 1.0]])


def test_top_k_neighbours_hand_case_with_tie():
    # b rows: 0 -> [3, 1] (tie 1/2 at 0 -> lower index); 1 -> 3 (.707), 0 (0), 2 (-1) -> [3, 0];
    #         2 -> 0 (0), 3 (-.707), 1 (-1) -> [0, 3]; 3 -> 0 and 1 tie at .707 -> [0, 1]
    assert top_k_neighbours(B, 2).tolist() == [[3, 1], [3, 0], [0, 3], [0, 1]]
    # a rows: 0 -> 3 (.707), 2 (.0995), 1 (0) -> [3, 2]; the others as under b
    assert top_k_neighbours(A, 2).tolist() == [[3, 2], [3, 0], [0, 3], [0, 1]]


def test_neighbour_agreement_hand_case():
    # overlaps: row 0 {3,2}∩{3,1} -> 1/2; rows 1-3 identical sets -> 1
    # mean (0.5+1+1+1)/4 = 0.875; min 0.5; p5: sorted [.5,1,1,1], h = 0.15 -> 0.5 + 0.15·0.5 = 0.575
    np.testing.assert_allclose(neighbour_overlap(A, B, k=2), [0.5, 1.0, 1.0, 1.0])
    s = neighbour_agreement(A, B, k=2)
    assert isinstance(s, AgreementSummary)
    assert (s.k, s.count, s.nonfinite) == (2, 4, 0)
    assert s.mean == pytest.approx(0.875)
    assert s.min == 0.5
    assert s.p5 == pytest.approx(0.575)


def test_neighbour_agreement_identical_is_one_and_nan_rows_counted():
    a = np.random.default_rng(2).normal(size=(30, 6))
    assert neighbour_agreement(a, a, k=5).mean == 1.0
    b = a.copy()
    b[7] = NAN
    s = neighbour_agreement(a, b, k=5)
    assert (s.count, s.nonfinite) == (29, 1)
    assert -1 not in top_k_neighbours(b, 5)[np.arange(30) != 7]  # never chosen as a neighbour
    assert 7 not in top_k_neighbours(b, 5)


def test_neighbour_k_bounds():
    with pytest.raises(ValueError):
        neighbour_agreement(B, B, k=4)  # only 3 others
