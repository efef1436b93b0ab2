"""Frontiers, cost at matched accuracy (and its bootstrap), ACE, APGR, CPT, ratios."""

from __future__ import annotations

import numpy as np
import pytest

from shepherd_bench.analysis.matched import (
    Target,
    accuracy_at_cost,
    ace,
    apgr,
    cost_at_accuracy,
    cost_at_accuracy_batch,
    cost_fraction,
    cost_ratio,
    cost_reduction,
    cpt,
    matched_cost,
    pareto_frontier,
    percentile_with_inf,
    pgr,
    savings_ratio,
    upper_hull,
)

#            A     B     C     D     E     F
COST = [0.0, 1.0, 2.0, 3.0, 4.0, 1.5]
ACC = [0.5, 0.6, 0.9, 0.85, 0.95, 0.62]


def test_hulls_on_hand_made_points() -> None:
    assert pareto_frontier(ACC, COST).tolist() == [0, 1, 5, 2, 4]  # D is dominated by C
    # concave: chord A -> C has slope 0.2; B (0.7 on the chord) and F (0.8) lie below it
    assert upper_hull(ACC, COST, "concave").tolist() == [0, 2, 4]
    assert upper_hull(ACC, COST, "pareto").tolist() == [0, 1, 5, 2, 4]
    with pytest.raises(ValueError, match="frontier mode"):
        upper_hull(ACC, COST, "convex")


def test_hull_tie_in_cost_keeps_best_accuracy() -> None:
    assert upper_hull([0.5, 0.7, 0.9], [1.0, 1.0, 2.0]).tolist() == [1, 2]


def test_cost_at_accuracy_interpolates_and_never_extrapolates() -> None:
    assert cost_at_accuracy(ACC, COST, 0.7, "concave") == pytest.approx(1.0)  # (0.7-0.5)/0.4*2
    assert cost_at_accuracy(ACC, COST, 0.7, "pareto") == pytest.approx(2.0)
    assert cost_at_accuracy(ACC, COST, 0.925, "concave") == pytest.approx(3.0)  # halfway C -> E
    assert cost_at_accuracy(ACC, COST, 0.95) == pytest.approx(4.0)
    assert cost_at_accuracy(ACC, COST, 0.96) is None
    assert cost_at_accuracy(ACC, COST, 0.96, "pareto") is None
    assert cost_at_accuracy(ACC, COST, 0.4) == pytest.approx(0.0)  # cheapest point already reaches it


def test_accuracy_at_cost() -> None:
    assert accuracy_at_cost(ACC, COST, 1.0, "concave") == pytest.approx(0.7)
    assert accuracy_at_cost(ACC, COST, 1.0, "pareto") == pytest.approx(0.6)
    assert accuracy_at_cost(ACC, COST, 10.0) == pytest.approx(0.95)
    assert accuracy_at_cost(ACC, COST, -1.0) is None


@pytest.mark.parametrize("mode", ["concave", "pareto"])
def test_batch_equals_hull_interpolation(mode: str) -> None:
    rng = np.random.default_rng(7)
    acc, cost = rng.random((300, 6)), rng.random((300, 6))
    targets = rng.random(300) * 1.05
    batch = cost_at_accuracy_batch(acc, cost, targets, mode)
    for b in range(300):
        want = cost_at_accuracy(acc[b], cost[b], float(targets[b]), mode)
        if want is None:
            assert batch[b] == np.inf
        else:
            assert batch[b] == pytest.approx(want, abs=1e-12)


def test_target_parse_and_resolve() -> None:
    assert Target.parse("llm") == Target("llm") == Target.parse(1.0)
    t = Target.parse("0.95")
    assert t == Target("llm_fraction", 0.95) and t.label == "95% of LLM-only accuracy"
    assert float(t.resolve(0.5, 0.8)) == pytest.approx(0.76)
    g = Target.parse("gap:0.8")
    assert g.needs_slm and float(g.resolve(0.5, 0.8)) == pytest.approx(0.74)
    with pytest.raises(ValueError, match="bad target"):
        Target.parse("most")


def test_percentile_with_inf() -> None:
    assert percentile_with_inf(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 0.5) == pytest.approx(3.0)
    assert percentile_with_inf(np.array([1.0, 2.0, 3.0, np.inf, np.inf]), 0.5) == pytest.approx(3.0)
    assert percentile_with_inf(np.array([1.0, 2.0, np.inf, np.inf, np.inf]), 0.5) is None


def _sweep(n: int = 200, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Three hint levels with nested successes (more hint never hurts) and LLM-only."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    correct = np.column_stack([(difficulty < q).astype(float) for q in (0.4, 0.6, 0.8)])
    cost = np.column_stack([np.full(n, c) for c in (0.0, 1.0, 3.0)])
    return correct, cost, (difficulty < 0.8).astype(float), np.full(n, 5.0), correct[:, 0]


def test_matched_cost_full_sample_and_ci() -> None:
    correct, cost, llm_c, llm_cost, slm_c = _sweep()
    t = Target("llm_fraction", 0.9)
    m = matched_cost(correct, cost, llm_c, llm_cost, t, slm_correct=slm_c, B=1000, seed=0)
    target = 0.9 * llm_c.mean()
    want = cost_at_accuracy(correct.mean(axis=0), cost.mean(axis=0), target)
    assert m.target_accuracy == pytest.approx(target)
    assert m.cost == pytest.approx(want)
    assert m.low is not None and m.high is not None and m.low <= m.cost <= m.high
    assert m.not_reached_fraction == 0.0
    assert m.reduction == pytest.approx(1 - want / 5.0)
    assert m.reduction_low is not None and m.reduction_high is not None
    assert m.reduction_low <= m.reduction <= m.reduction_high


def test_matched_cost_not_reached() -> None:
    correct, cost, _, llm_cost, _ = _sweep()
    llm_all = np.ones(len(correct))  # LLM-only solves everything; the sweep tops out at ~80%
    m = matched_cost(correct, cost, llm_all, llm_cost, Target("llm"), B=300, seed=0)
    assert m.cost is None and m.low is None and m.high is None and m.reduction is None
    assert m.not_reached_fraction == 1.0


def test_matched_cost_sometimes_reached() -> None:
    # The top sweep point equals LLM-only on average: in about half the resamples the paired target
    # (recomputed per resample) is reached, so the upper CI bound is "not reached".
    correct, cost, _, llm_cost, _ = _sweep()
    llm_c = correct[:, 2].copy()
    ones, zeros = np.flatnonzero(llm_c == 1), np.flatnonzero(llm_c == 0)
    llm_c[ones[:10]], llm_c[zeros[:10]] = 0.0, 1.0  # same mean, different queries
    m = matched_cost(correct, cost, llm_c, llm_cost, Target("llm"), B=1000, seed=0)
    assert 0.05 < m.not_reached_fraction < 0.95
    assert m.high is None


def test_matched_cost_needs_slm_for_gap_target() -> None:
    correct, cost, llm_c, llm_cost, _ = _sweep()
    with pytest.raises(ValueError, match="needs SLM-only"):
        matched_cost(correct, cost, llm_c, llm_cost, Target("gap", 0.5))


def test_ace_and_ratios_hand_computed() -> None:
    # ((0.8-0.5)/(3-0)) * ((10-0)/(0.9-0.5)) = 0.1 * 25
    assert ace(0.8, 3.0, 0.5, 0.0, 0.9, 10.0) == pytest.approx(2.5)
    assert ace(0.9, 10.0, 0.5, 0.0, 0.9, 10.0) == pytest.approx(1.0)
    assert ace(0.6, 0.0, 0.5, 0.0, 0.9, 10.0) is None
    assert cost_reduction(3.0, 10.0) == pytest.approx(0.7)
    assert cost_reduction(3.0, 0.0) is None
    assert cost_ratio(3.0, 6.0) == pytest.approx(0.5)
    assert savings_ratio(3.0, 6.0, 10.0) == pytest.approx(7 / 4)  # the "x times the savings" figure
    assert savings_ratio(3.0, 10.0, 10.0) is None


def test_pgr_and_cost_fraction() -> None:
    assert pgr([0.5, 0.7, 0.9], 0.5, 0.9).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert cost_fraction([0.0, 5.0], 0.0, 10.0).tolist() == [0.0, 0.5]
    assert cost_fraction([2.0], 1.0, 3.0).tolist() == [0.5]


def test_apgr_and_cpt_hand_computed() -> None:
    # one point at 20% of the cost recovering 80% of the gap, plus the (0,0) / (1,1) anchors
    assert apgr([0.2], [0.8], "concave") == pytest.approx(0.2 * 0.4 + 0.8 * 0.9)
    assert apgr([0.2], [0.8], "pareto") == pytest.approx(0.8 * 0.8)
    assert cpt([0.2], [0.8], 0.5, "concave") == pytest.approx(0.125)
    assert cpt([0.2], [0.8], 0.8, "concave") == pytest.approx(0.2)
    assert cpt([0.2], [0.8], 0.5, "pareto") == pytest.approx(0.2)
    assert apgr([0.25, 0.5, 0.75], [0.25, 0.5, 0.75]) == pytest.approx(0.5)  # random-router diagonal
    assert cpt([0.5], [0.9], 1.1) is None


def test_apgr_agrees_with_routellm_trapezoid_on_a_concave_curve() -> None:
    x = np.linspace(0, 1, 11)
    g = np.sqrt(x)
    trapz = float(np.sum((g[1:] + g[:-1]) / 2 * np.diff(x)))
    assert apgr(x[1:-1], g[1:-1]) == pytest.approx(trapz)


def test_aiq_hand_computed() -> None:
    """SLM-only (0, 0.50), LLM-only (1.0, 0.70), a sweep point (0.2, 0.66) and a dominated one (0.5, 0.60).
    Hull (0, .5) -> (.2, .66) -> (1, .7): area .2 * (.5 + .66) / 2 + .8 * (.66 + .7) / 2 = .66 over a cost
    range of 1. Staircase: .5 * .2 + .66 * .8 = .628."""
    from shepherd_bench.analysis.matched import aiq

    acc, cost = [0.66, 0.60, 0.50, 0.70], [0.2, 0.5, 0.0, 1.0]
    assert aiq(acc, cost, 0.0, 1.0) == pytest.approx(0.66)
    assert aiq(acc, cost, 0.0, 1.0, "pareto") == pytest.approx(0.628)
    # normalised by the cost range: dollars or fractions give the same AIQ
    assert aiq(acc, [c * 2.4e-4 for c in cost], 0.0, 2.4e-4) == pytest.approx(0.66)
    # the same curve in RouteLLM's axes: AIQ = A_s + (A_l - A_s) * APGR
    g = apgr([0.2, 0.5], [(0.66 - 0.5) / 0.2, (0.60 - 0.5) / 0.2])
    assert aiq(acc, cost, 0.0, 1.0) == pytest.approx(0.5 + 0.2 * g)
    # only the end points: the chord, (A_s + A_l) / 2
    assert aiq([0.5, 0.7], [0.0, 1.0], 0.0, 1.0) == pytest.approx(0.6)
    assert aiq([0.5, 0.7], [0.1, 1.0], 0.0, 1.0) is None  # nothing costs c_min or less


def test_aiq_bootstrap_is_paired_and_contains_the_estimate() -> None:
    from shepherd_bench.analysis.matched import aiq, aiq_bootstrap

    rng = np.random.default_rng(3)
    n = 300
    slm = (rng.random(n) < 0.4).astype(float)
    llm = np.maximum(slm, (rng.random(n) < 0.5).astype(float))
    hinted = np.maximum(slm, (rng.random(n) < 0.3).astype(float))
    cost_llm = 1e-4 + 1e-5 * rng.random(n)
    cost_hint = 0.3 * cost_llm
    r = aiq_bootstrap(hinted[:, None], cost_hint[:, None], (slm, np.zeros(n)), (llm, cost_llm), B=500, seed=1)
    expect = aiq([hinted.mean(), slm.mean(), llm.mean()], [cost_hint.mean(), 0.0, cost_llm.mean()],
                 0.0, float(cost_llm.mean()))
    assert r.estimate == pytest.approx(expect)
    assert r.low is not None and r.high is not None and r.low < r.estimate < r.high
    again = aiq_bootstrap(hinted[:, None], cost_hint[:, None], (slm, np.zeros(n)), (llm, cost_llm), B=500, seed=1)
    assert (again.low, again.high) == (r.low, r.high)
