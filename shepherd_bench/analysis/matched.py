"""Cost at matched accuracy, frontiers, and the trade-off metrics (ACE, APGR, CPT, savings ratios).

A strategy family swept over a threshold or a hint size gives accuracy-cost points. Two frontiers:

- ``"concave"`` (default): the upper-left concave hull (concave majorant of accuracy as a function of
  cost, kept where it increases). Any point on a hull segment is *achievable*: run the two endpoint
  policies at random with the mixing probability and both expected accuracy and expected cost are the
  linear mix. This is the convention RouteLLM and the shepherding paper use when policies may be mixed,
  and it is the honest frontier of what the family can deliver at a given budget.
- ``"pareto"``: the staircase of non-dominated points, no mixing: the cost of reaching a target is the
  cost of the cheapest measured point that reaches it.

Interpolation never extrapolates: a target above the best point is "not reached" (``None``); a target
below the cheapest point costs what the cheapest point costs.

The vectorised form used by the bootstrap does not build hulls: the minimum expected cost to reach
accuracy ``t`` by mixing is attained by a single point or a mix of two points (a linear programme in
two constraints), so it is the minimum over all singles with ``a_j >= t`` and over all pairs
``a_i < t <= a_j`` of ``c_i + (t - a_i) / (a_j - a_i) * (c_j - c_i)``. That equals the hull
interpolation exactly (tested), and runs over ``[B, P, P]`` arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .bootstrap import (
    DEFAULT_B,
    FloatArray,
    IntArray,
    index_counts,
    prepare_correct,
    resample_indices,
    resampled_means,
)

MODES: tuple[str, ...] = ("concave", "pareto")
EPS = 1e-9  # accuracy comparisons: a point "reaches" t when a >= t - EPS (0.95 * A_l rounding)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown frontier mode '{mode}'; use one of {MODES}")


# --- frontiers ---------------------------------------------------------------------------------------

def pareto_frontier(acc: Sequence[float] | FloatArray, cost: Sequence[float] | FloatArray) -> IntArray:
    """Indices of the non-dominated points, by increasing cost (accuracy strictly increasing)."""
    a, c = np.asarray(acc, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    order = np.lexsort((-a, c))  # cost ascending, ties: best accuracy first
    keep: list[int] = []
    best = -math.inf
    for i in order:
        if a[i] > best:
            keep.append(int(i))
            best = float(a[i])
    return np.asarray(keep, dtype=np.int64)


def upper_hull(acc: Sequence[float] | FloatArray, cost: Sequence[float] | FloatArray,
               mode: str = "concave") -> IntArray:
    """Frontier vertices (indices, by increasing cost): the Pareto staircase or its concave hull."""
    _check_mode(mode)
    front = pareto_frontier(acc, cost)
    if mode == "pareto":
        return front
    a, c = np.asarray(acc, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    hull: list[int] = []
    for i in front:
        while len(hull) >= 2:
            o, m = hull[-2], hull[-1]
            cross = (c[m] - c[o]) * (a[i] - a[o]) - (a[m] - a[o]) * (c[i] - c[o])
            if cross >= 0:  # m lies on or below the chord o -> i: not a vertex of the concave hull
                hull.pop()
            else:
                break
        hull.append(int(i))
    return np.asarray(hull, dtype=np.int64)


def cost_at_accuracy(acc: Sequence[float] | FloatArray, cost: Sequence[float] | FloatArray, target: float,
                     mode: str = "concave") -> float | None:
    """Minimum cost to reach ``target`` accuracy on the frontier; ``None`` if not reached."""
    a, c = np.asarray(acc, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    h = upper_hull(a, c, mode)
    ha, hc = a[h], c[h]
    if target > ha[-1] + EPS:
        return None
    j = int(np.argmax(ha >= target - EPS))
    if j == 0 or mode == "pareto" or ha[j] <= target:
        return float(hc[j])
    i = j - 1
    return float(hc[i] + (target - ha[i]) / (ha[j] - ha[i]) * (hc[j] - hc[i]))


def accuracy_at_cost(acc: Sequence[float] | FloatArray, cost: Sequence[float] | FloatArray, budget: float,
                     mode: str = "concave") -> float | None:
    """Best accuracy on the frontier with cost <= ``budget``; ``None`` if below the cheapest point."""
    a, c = np.asarray(acc, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    h = upper_hull(a, c, mode)
    ha, hc = a[h], c[h]
    if budget < hc[0]:
        return None
    j = int(np.searchsorted(hc, budget, side="right")) - 1
    if mode == "pareto" or j == len(h) - 1 or hc[j] == budget:
        return float(ha[j])
    return float(ha[j] + (budget - hc[j]) / (hc[j + 1] - hc[j]) * (ha[j + 1] - ha[j]))


def cost_at_accuracy_batch(acc: FloatArray, cost: FloatArray, target: FloatArray | float,
                           mode: str = "concave") -> FloatArray:
    """Vectorised :func:`cost_at_accuracy` over resamples: ``acc, cost [B, P]``, ``target [B]``.

    Returns ``[B]`` costs with ``+inf`` where the target is not reached.
    """
    _check_mode(mode)
    a, c = np.atleast_2d(np.asarray(acc, dtype=np.float64)), np.atleast_2d(np.asarray(cost, dtype=np.float64))
    t = np.broadcast_to(np.asarray(target, dtype=np.float64), (a.shape[0],))[:, None]
    reach = a >= t - EPS
    best = np.where(reach, c, np.inf).min(axis=1)
    if mode == "pareto":
        return best
    ai, aj = a[:, :, None], a[:, None, :]
    ci, cj = c[:, :, None], c[:, None, :]
    tt = t[:, :, None]
    ok = (ai < tt - EPS) & (aj >= tt - EPS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mix = ci + (tt - ai) / np.where(ok, aj - ai, 1.0) * (cj - ci)
    mixed = np.where(ok, mix, np.inf).reshape(a.shape[0], -1).min(axis=1)
    return np.minimum(best, mixed)


# --- targets -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A target accuracy defined from the references: ``llm`` (A_l), ``llm_fraction`` (value * A_l) or
    ``gap`` (A_s + value * (A_l - A_s))."""

    kind: str
    value: float = 1.0

    def resolve(self, a_slm: FloatArray | float, a_llm: FloatArray | float) -> FloatArray:
        s, la = np.asarray(a_slm, dtype=np.float64), np.asarray(a_llm, dtype=np.float64)
        if self.kind == "llm":
            return la
        if self.kind == "llm_fraction":
            return self.value * la
        if self.kind == "gap":
            return s + self.value * (la - s)
        raise ValueError(f"unknown target kind '{self.kind}'; use llm, llm_fraction or gap")

    @property
    def needs_slm(self) -> bool:
        return self.kind == "gap"

    @property
    def label(self) -> str:
        if self.kind == "llm" or (self.kind == "llm_fraction" and self.value == 1.0):
            return "LLM-only accuracy"
        if self.kind == "llm_fraction":
            return f"{self.value:.0%} of LLM-only accuracy"
        return f"SLM + {self.value:.0%} of the SLM-LLM gap"

    @classmethod
    def parse(cls, text: str | float) -> Target:
        """``"llm"``, ``"0.95"`` (fraction of LLM-only), ``"gap:0.8"`` (SLM + 0.8 * gap)."""
        s = str(text).strip().lower()
        if s == "llm":
            return cls("llm")
        if s.startswith("gap:"):
            return cls("gap", float(s[4:]))
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"bad target '{text}'; use llm, a fraction of LLM-only like 0.95, "
                             f"or gap:0.8") from None
        return cls("llm") if v == 1.0 else cls("llm_fraction", v)


# --- bootstrap of the whole matched-cost pipeline ----------------------------------------------------

@dataclass(frozen=True)
class MatchedCost:
    """Cost at a target accuracy on a sweep's frontier, with its bootstrap interval.

    ``cost``/``low``/``high`` are ``None`` where the target is not reached (on the full sample, or at
    that quantile of the resamples). ``reduction_*``: 1 - cost / LLM-only cost.
    """

    target: str
    target_accuracy: float
    mode: str
    cost: float | None
    low: float | None
    high: float | None
    not_reached_fraction: float
    reduction: float | None
    reduction_low: float | None
    reduction_high: float | None
    llm_cost: float
    B: int
    # per resample (the seeded indices every curve of the same n, B and seed shares): the cost at the
    # target (+inf: not reached) and LLM-only's cost, for ratios between curves with their own intervals
    resampled: FloatArray | None = field(default=None, repr=False, compare=False)
    llm_resampled: FloatArray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("resampled", "llm_resampled")}


def percentile_with_inf(values: FloatArray, q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default rule) where ``+inf`` means "not reached";
    ``None`` when the quantile touches an infinite value."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    h = (len(v) - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    if not np.isfinite(v[hi]):
        return None
    return float(v[lo] + (h - lo) * (v[hi] - v[lo]))


def _reduction(c: float | None, c_llm: float) -> float | None:
    return None if c is None or c_llm <= 0 else 1.0 - c / c_llm


def matched_cost(
    correct: FloatArray,
    cost: FloatArray,
    llm_correct: FloatArray,
    llm_cost: FloatArray,
    target: Target,
    *,
    slm_correct: FloatArray | None = None,
    B: int = DEFAULT_B,
    seed: int = 0,
    level: float = 0.95,
    mode: str = "concave",
    error_policy: str = "wrong",
    indices: IntArray | None = None,
) -> MatchedCost:
    """Bootstrap resample -> per-point mean accuracy and cost -> frontier -> interpolate at the target.

    ``correct, cost [n, P]``: per query, per sweep point (NaN = error); ``llm_correct, llm_cost [n]``:
    LLM-only on the same queries (the target and the reduction are recomputed in every resample, so
    they are paired with the sweep); ``slm_correct [n]`` is needed for ``gap`` targets.
    """
    _check_mode(mode)
    correct = np.atleast_2d(np.asarray(correct, dtype=np.float64).T).T
    cost = np.atleast_2d(np.asarray(cost, dtype=np.float64).T).T
    n, P = correct.shape
    if target.needs_slm and slm_correct is None:
        raise ValueError(f"target '{target.label}' needs SLM-only results (slm_correct)")
    refs = [np.asarray(llm_correct, dtype=np.float64)]
    refs.append(np.asarray(slm_correct, dtype=np.float64) if slm_correct is not None else refs[0])
    all_correct = np.column_stack([correct, *refs])
    all_cost = np.column_stack([cost, np.asarray(llm_cost, dtype=np.float64), np.zeros(n)])
    vals, used = prepare_correct(all_correct, error_policy)
    idx = resample_indices(n, B, seed) if indices is None else np.asarray(indices, dtype=np.int64)
    counts = index_counts(idx, n)
    # full sample first: one "resample" with every query once
    full = np.ones((1, n))
    acc_f, cost_f = resampled_means(full, vals, used), resampled_means(full, all_cost, used)
    acc_b, cost_b = resampled_means(counts, vals, used), resampled_means(counts, all_cost, used)
    t_f = target.resolve(acc_f[:, P + 1], acc_f[:, P])
    t_b = target.resolve(acc_b[:, P + 1], acc_b[:, P])
    c_full = float(cost_at_accuracy_batch(acc_f[:, :P], cost_f[:, :P], t_f, mode)[0])
    c_b = cost_at_accuracy_batch(acc_b[:, :P], cost_b[:, :P], t_b, mode)
    red_b = np.where(cost_b[:, P] > 0, 1.0 - c_b / np.where(cost_b[:, P] > 0, cost_b[:, P], 1.0), np.nan)
    alpha = (1.0 - level) / 2.0
    est = c_full if np.isfinite(c_full) else None
    # reduction is decreasing in cost: -inf (not reached) sorts first, so take its quantiles negated
    neg = -np.where(np.isnan(red_b), -np.inf, red_b)
    r_hi, r_lo = percentile_with_inf(neg, alpha), percentile_with_inf(neg, 1 - alpha)
    llm_c = float(cost_f[0, P])
    return MatchedCost(
        target=target.label, target_accuracy=float(t_f[0]), mode=mode, cost=est,
        low=percentile_with_inf(c_b, alpha), high=percentile_with_inf(c_b, 1 - alpha),
        not_reached_fraction=float(np.mean(~np.isfinite(c_b))),
        reduction=_reduction(est, llm_c),
        reduction_low=None if r_lo is None else -r_lo, reduction_high=None if r_hi is None else -r_hi,
        llm_cost=llm_c, B=int(idx.shape[0]), resampled=c_b, llm_resampled=cost_b[:, P],
    )


# --- trade-off metrics -------------------------------------------------------------------------------

def cost_reduction(cost: float, llm_cost: float) -> float | None:
    """Fractional saving vs LLM-only: ``1 - C / C_l`` (``None`` when LLM-only is free)."""
    return None if llm_cost <= 0 else 1.0 - cost / llm_cost


def ace(a_p: float, c_p: float, a_s: float, c_s: float, a_l: float, c_l: float) -> float | None:
    """The paper's accuracy-cost efficiency ``((A_p - A_s)/(C_p - C_s)) * ((C_l - C_s)/(A_l - A_s))``.

    1 = the policy gains accuracy per dollar at the same rate as moving from SLM to LLM; > 1 better.
    ``None`` where a denominator is 0 (a policy costing what SLM-only costs, or A_l == A_s).
    """
    if c_p == c_s or a_l == a_s:
        return None
    return ((a_p - a_s) / (c_p - c_s)) * ((c_l - c_s) / (a_l - a_s))


def cost_ratio(cost_a: float, cost_b: float) -> float | None:
    """Ratio of absolute costs ``C_a / C_b``."""
    return None if cost_b == 0 else cost_a / cost_b


def savings_ratio(cost_a: float, cost_b: float, llm_cost: float) -> float | None:
    """Ratio of savings vs LLM-only: ``(C_l - C_a) / (C_l - C_b)`` (the paper's "2.8x" is one)."""
    den = llm_cost - cost_b
    return None if den == 0 else (llm_cost - cost_a) / den


def cost_fraction(cost: FloatArray | Sequence[float], slm_cost: float, llm_cost: float) -> FloatArray:
    """Normalised cost ``(C - C_s) / (C_l - C_s)``: 0 = SLM-only, 1 = LLM-only (= C / C_l when the
    SLM is free). Pass a fraction of LLM calls instead for RouteLLM's call-based axis."""
    return (np.asarray(cost, dtype=np.float64) - slm_cost) / (llm_cost - slm_cost)


def pgr(acc: FloatArray | Sequence[float], a_s: float, a_l: float) -> FloatArray:
    """Performance gap recovered ``(A - A_s) / (A_l - A_s)``."""
    return (np.asarray(acc, dtype=np.float64) - a_s) / (a_l - a_s)


def _with_anchors(x: Sequence[float] | FloatArray, g: Sequence[float] | FloatArray
                  ) -> tuple[FloatArray, FloatArray]:
    """Add SLM-only (0, 0) and LLM-only (1, 1) to (cost fraction, PGR) points: always available."""
    return (np.concatenate([[0.0, 1.0], np.asarray(x, dtype=np.float64)]),
            np.concatenate([[0.0, 1.0], np.asarray(g, dtype=np.float64)]))


def apgr(x: Sequence[float] | FloatArray, g: Sequence[float] | FloatArray, mode: str = "concave") -> float:
    """Average performance gap recovered: the area under the PGR-vs-cost-fraction frontier on [0, 1].

    ``x``: cost fraction (or fraction of LLM calls) of each sweep point; ``g``: its PGR. SLM-only
    (0, 0) and LLM-only (1, 1) are added. The frontier f(x) = best PGR with cost fraction <= x (concave
    hull or staircase), integrated exactly. RouteLLM integrates its raw threshold curve with the
    trapezoid rule; on a sweep whose points are already on their hull the two agree.
    """
    xs, gs = _with_anchors(x, g)
    breaks = np.unique(np.concatenate([[0.0, 1.0], xs[(xs >= 0) & (xs <= 1)]]))
    f = np.array([accuracy_at_cost(gs, xs, float(b), mode) for b in breaks], dtype=np.float64)
    if mode == "pareto":
        return float(np.sum(f[:-1] * np.diff(breaks)))
    return float(np.sum((f[:-1] + f[1:]) / 2 * np.diff(breaks)))


def cpt(x: Sequence[float] | FloatArray, g: Sequence[float] | FloatArray, p: float,
        mode: str = "concave") -> float | None:
    """Call-performance threshold CPT(p): the smallest cost fraction whose frontier recovers ``p`` of
    the gap (e.g. p = 0.5 for CPT(50%)); ``None`` if not reached."""
    xs, gs = _with_anchors(x, g)
    return cost_at_accuracy(gs, xs, p, mode)


def frontier_points(acc: FloatArray, cost: FloatArray, mode: str = "concave") -> NDArray[np.float64]:
    """``[m, 2]`` (cost, accuracy) frontier vertices, for plots."""
    h = upper_hull(acc, cost, mode)
    return np.column_stack([np.asarray(cost)[h], np.asarray(acc)[h]])


# --- AIQ (RouterBench) ---------------------------------------------------------------------------------

def aiq(acc: Sequence[float] | FloatArray, cost: Sequence[float] | FloatArray, c_min: float, c_max: float,
        mode: str = "concave") -> float | None:
    """RouterBench's average improvement in quality: the area under the non-decreasing convex hull of
    accuracy vs cost on ``[c_min, c_max]``, divided by ``c_max - c_min`` (an accuracy, in [0, 1]).

    Pass the end points with the sweep (SLM-only at ``c_min``, LLM-only at ``c_max``; with a free SLM
    the normaliser is the maximum cost). The hull f(c) is the best accuracy reachable with cost <= c
    (mixing allowed in ``"concave"`` mode; the staircase in ``"pareto"``); below the cheapest point
    there is nothing to integrate, so ``None`` when no point costs ``c_min`` or less.
    """
    a, c = np.asarray(acc, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    if not c_max > c_min or not np.any(c <= c_min + EPS):
        return None
    h = upper_hull(a, c, mode)  # by increasing cost, accuracy increasing
    hc, ha = c[h], a[h]
    inside = (hc > c_min) & (hc < c_max)
    xs = np.concatenate([[c_min], hc[inside], [c_max]])
    if mode == "pareto":
        f = ha[np.searchsorted(hc, xs + EPS, side="right") - 1]  # best accuracy with cost <= x
        area = float(np.sum(f[:-1] * np.diff(xs)))
    else:
        f = np.interp(xs, hc, ha)  # the hull is linear between vertices and flat past the last one
        area = float(np.sum((f[:-1] + f[1:]) / 2 * np.diff(xs)))
    return area / (c_max - c_min)


@dataclass(frozen=True)
class AIQResult:
    estimate: float | None
    low: float | None
    high: float | None
    B: int


def aiq_bootstrap(correct: FloatArray, cost: FloatArray, slm: tuple[FloatArray, FloatArray],
                  llm: tuple[FloatArray, FloatArray], *, B: int = DEFAULT_B, seed: int = 0, level: float = 0.95,
                  mode: str = "concave", error_policy: str = "wrong", indices: IntArray | None = None) -> AIQResult:
    """AIQ of a sweep (``correct, cost [n, P]``) with SLM-only and LLM-only (``(correct [n], cost [n])``)
    as end points and the cost range ``[C_SLM, C_LLM]``, with a paired percentile bootstrap over queries
    (the same resamples for the sweep and both end points)."""
    correct = np.atleast_2d(np.asarray(correct, dtype=np.float64).T).T
    cost = np.atleast_2d(np.asarray(cost, dtype=np.float64).T).T
    n = correct.shape[0]
    all_correct = np.column_stack([correct, slm[0], llm[0]])
    all_cost = np.column_stack([cost, slm[1], llm[1]])
    vals, used = prepare_correct(all_correct, error_policy)
    idx = resample_indices(n, B, seed) if indices is None else np.asarray(indices, dtype=np.int64)
    counts = index_counts(idx, n)

    def one(acc_row: FloatArray, cost_row: FloatArray) -> float:
        v = aiq(acc_row, cost_row, float(cost_row[-2]), float(cost_row[-1]), mode)
        return math.nan if v is None else v

    full = np.ones((1, n))
    est = one(resampled_means(full, vals, used)[0], resampled_means(full, all_cost, used)[0])
    acc_b, cost_b = resampled_means(counts, vals, used), resampled_means(counts, all_cost, used)
    boots = np.array([one(acc_b[b], cost_b[b]) for b in range(acc_b.shape[0])])
    boots = boots[np.isfinite(boots)]
    alpha = (1.0 - level) / 2.0
    lo, hi = (float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))) if len(boots) else (None, None)
    return AIQResult(None if math.isnan(est) else est, lo, hi, int(idx.shape[0]))
