"""Paired bootstrap: against hand enumeration, scipy, and the paired-vs-unpaired case."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from shepherd_bench.analysis.bootstrap import (
    error_policy_note,
    index_counts,
    paired_bootstrap,
    percentile_interval,
    resample_indices,
    resampled_means,
)


def test_counts_matmul_equals_naive_indexing() -> None:
    rng = np.random.default_rng(3)
    values = rng.random((50, 4))
    idx = resample_indices(50, B=300, seed=9)
    fast = resampled_means(index_counts(idx, 50), values)
    naive = values[idx].mean(axis=1)
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-12)


def test_indices_are_seeded_and_shared() -> None:
    a, b = resample_indices(20, 10, seed=5), resample_indices(20, 10, seed=5)
    assert a.shape == (10, 20) and np.array_equal(a, b)
    assert not np.array_equal(a, resample_indices(20, 10, seed=6))


def test_exact_enumeration_n3() -> None:
    # All 27 equally likely resamples of [0, 1, 1]: the mean is k/3 with k ~ Binomial(3, 2/3):
    # 1 x 0, 6 x 1/3, 12 x 2/3, 8 x 1. Percentile rule (linear): 2.5% -> h = 26 * 0.025 = 0.65,
    # between 0 and 1/3 -> 0.65 / 3; 97.5% -> h = 25.35, between 1 and 1 -> 1.
    idx = np.array(list(itertools.product(range(3), repeat=3)))
    correct = np.array([0.0, 1.0, 1.0])
    res = paired_bootstrap(correct, np.zeros(3), ["s"], indices=idx)
    acc = res.stats("s").accuracy
    assert acc.estimate == pytest.approx(2 / 3)
    assert acc.low == pytest.approx(0.65 / 3)
    assert acc.high == pytest.approx(1.0)
    assert res.B == 27


def test_percentile_interval_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    cost = rng.gamma(2.0, 1.0, size=60)
    res = paired_bootstrap(np.ones(60), cost, ["s"], B=20_000, seed=1)
    ref = stats.bootstrap((cost,), np.mean, n_resamples=20_000, method="percentile",
                          confidence_level=0.95, random_state=np.random.default_rng(2))
    iv = res.stats("s").cost
    assert iv.estimate == pytest.approx(cost.mean())
    # Monte Carlo error of a 2.5% quantile at B = 20,000 is ~1% of the spread: allow 3%
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert iv.low == pytest.approx(ref.confidence_interval.low, abs=0.03 * width)
    assert iv.high == pytest.approx(ref.confidence_interval.high, abs=0.03 * width)


def test_paired_difference_matches_scipy_paired() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(1.0, 1.0, 80)
    b = a + rng.normal(0.2, 0.3, 80)
    res = paired_bootstrap(np.ones((80, 2)), np.column_stack([a, b]), ["a", "b"], B=20_000, seed=3)
    d = res.difference("b", "a").cost
    ref = stats.bootstrap((b, a), lambda x, y: np.mean(x) - np.mean(y), paired=True, n_resamples=20_000,
                          method="percentile", random_state=np.random.default_rng(5))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert d.estimate == pytest.approx(b.mean() - a.mean())
    assert d.low == pytest.approx(ref.confidence_interval.low, abs=0.03 * width)
    assert d.high == pytest.approx(ref.confidence_interval.high, abs=0.03 * width)


def test_paired_ci_is_narrow_where_unpaired_would_be_wrong() -> None:
    # Two strategies that agree on 194 of 200 queries; B wins the other 6. The true paired difference
    # is +3 points and never negative; resampling each strategy on its own loses the pairing.
    rng = np.random.default_rng(11)
    a = (rng.random(200) < 0.5).astype(float)
    wrong = np.flatnonzero(a == 0)[:6]
    b = a.copy()
    b[wrong] = 1.0
    correct = np.column_stack([a, b])
    res = paired_bootstrap(correct, np.zeros((200, 2)), ["a", "b"], B=4000, seed=0)
    d = res.difference("b", "a")
    assert d.accuracy.estimate == pytest.approx(0.03)
    assert d.accuracy.low > 0 and d.accuracy_significant

    # unpaired: independent index matrices per strategy
    ma = resampled_means(index_counts(resample_indices(200, 4000, seed=1), 200), a[:, None])[:, 0]
    mb = resampled_means(index_counts(resample_indices(200, 4000, seed=2), 200), b[:, None])[:, 0]
    lo, hi = percentile_interval((mb - ma)[:, None])
    assert lo[0] < 0 < hi[0]  # would wrongly call the difference not significant
    assert (d.accuracy.high - d.accuracy.low) < (hi[0] - lo[0]) / 3


def test_default_pairs_against_first_and_not_significant_flag() -> None:
    correct = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]] * 5, dtype=float)
    res = paired_bootstrap(correct, np.ones_like(correct), ["x", "y", "z"], B=500, seed=0)
    assert [(d.a, d.b) for d in res.differences] == [("y", "x"), ("z", "x")]
    d = res.difference("y", "x")
    assert d.accuracy.estimate == pytest.approx(0.0)
    assert not d.accuracy_significant
    assert d.cost.estimate == 0 and not d.cost_significant


def test_error_policies() -> None:
    nan = np.nan
    correct = np.array([1, 0, nan, 1, nan, 1], dtype=float)
    cost = np.array([1, 1, 4, 1, 4, 1], dtype=float)
    wrong = paired_bootstrap(correct, cost, ["s"], B=200, error_policy="wrong")
    excl = paired_bootstrap(correct, cost, ["s"], B=200, error_policy="exclude")
    sw, se = wrong.stats("s"), excl.stats("s")
    assert sw.n_errors == se.n_errors == 2
    assert sw.accuracy.estimate == pytest.approx(3 / 6) and sw.n_used == 6
    assert sw.cost.estimate == pytest.approx(12 / 6)  # errors were paid for
    assert se.accuracy.estimate == pytest.approx(3 / 4) and se.n_used == 4
    assert se.cost.estimate == pytest.approx(1.0)
    assert "incorrect" in wrong.policy_note() and "excluded" in excl.policy_note()
    assert wrong.to_json()["error_policy"] == "wrong"
    with pytest.raises(ValueError, match="unknown error policy"):
        error_policy_note("drop")


def test_shape_and_name_validation() -> None:
    with pytest.raises(ValueError, match="shapes disagree"):
        paired_bootstrap(np.ones((3, 2)), np.ones((3, 2)), ["a"])
    with pytest.raises(ValueError, match="unique"):
        paired_bootstrap(np.ones((3, 2)), np.ones((3, 2)), ["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        resample_indices(0)
