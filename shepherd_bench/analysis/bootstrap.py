"""Paired bootstrap over queries, vectorised.

Every strategy compared is resampled with the *same* query indices: one index matrix ``[B, n]`` drawn
from a seeded ``numpy.random.Generator``. The indices are turned into a count matrix ``W[B, n]``
(how often each query appears in each resample), so a resampled mean of any per-query column is one
row of ``W @ values / n``: the whole bootstrap of ``k`` strategies is a single ``[B, n] x [n, k]``
matrix product instead of materialising a ``[B, n, k]`` array.

Intervals are percentile intervals (``numpy.percentile``, linear interpolation: the same rule as
``scipy.stats.bootstrap(method="percentile")``). A difference between two strategies is computed per
resample (paired), and is *significant* when its interval excludes 0.

Errors (samples whose ``correct`` is NaN: a failed call, never graded) follow an explicit policy:

- ``"wrong"``: an error counts as incorrect; its cost still counts (the calls were paid for).
- ``"exclude"``: an error sample is dropped from that strategy's accuracy and mean cost; each
  strategy's estimate is then a ratio estimator over its own non-error queries within each resample
  (paired differences still use the same resampled queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

ErrorPolicy = Literal["wrong", "exclude"]
ERROR_POLICIES: tuple[str, ...] = ("wrong", "exclude")
DEFAULT_B = 2000

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Interval:
    """A point estimate on the full sample with its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def to_json(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class StrategyStats:
    name: str
    n: int  # queries in the (paired) sample
    n_errors: int
    n_used: int  # queries counted under the error policy
    accuracy: Interval
    cost: Interval  # mean cost per query, USD


@dataclass(frozen=True)
class Difference:
    """``a - b`` for accuracy and for mean cost, paired."""

    a: str
    b: str
    accuracy: Interval
    cost: Interval

    @property
    def accuracy_significant(self) -> bool:
        return self.accuracy.excludes_zero

    @property
    def cost_significant(self) -> bool:
        return self.cost.excludes_zero


@dataclass(frozen=True)
class BootstrapResult:
    strategies: tuple[StrategyStats, ...]
    differences: tuple[Difference, ...]
    B: int
    seed: int
    level: float
    error_policy: str

    def stats(self, name: str) -> StrategyStats:
        for s in self.strategies:
            if s.name == name:
                return s
        raise KeyError(f"no strategy '{name}' in bootstrap result (have: {[s.name for s in self.strategies]})")

    def difference(self, a: str, b: str) -> Difference:
        for d in self.differences:
            if (d.a, d.b) == (a, b):
                return d
        raise KeyError(f"no difference {a} - {b} in bootstrap result")

    def policy_note(self) -> str:
        return error_policy_note(self.error_policy)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "B": self.B, "seed": self.seed, "level": self.level, "error_policy": self.error_policy,
            "error_policy_note": self.policy_note(),
            "strategies": [asdict(s) for s in self.strategies],
            "differences": [{**asdict(d), "accuracy_significant": d.accuracy_significant,
                             "cost_significant": d.cost_significant} for d in self.differences],
        }
        return out


def error_policy_note(policy: str) -> str:
    if policy == "wrong":
        return "errors (failed calls) count as incorrect; their cost counts"
    if policy == "exclude":
        return "errors (failed calls) are excluded from each strategy's accuracy and cost"
    raise ValueError(f"unknown error policy '{policy}'; use one of {ERROR_POLICIES}")


def resample_indices(n: int, B: int = DEFAULT_B, seed: int = 0) -> IntArray:
    """The one index matrix ``[B, n]`` shared by every strategy (seeded, reproducible)."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample (n = 0)")
    if B <= 0:
        raise ValueError(f"B must be positive, got {B}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(B, n), dtype=np.int64)


def index_counts(indices: IntArray, n: int) -> FloatArray:
    """``W[b, i]`` = how often query ``i`` appears in resample ``b`` (float, ready for a matmul)."""
    B = indices.shape[0]
    flat = (indices + (np.arange(B, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=B * n).reshape(B, n).astype(np.float64)


def resampled_means(counts: FloatArray, values: FloatArray, used: NDArray[np.bool_] | None = None) -> FloatArray:
    """Mean of each column of ``values[n, k]`` in each resample: ``[B, k]``.

    ``used[n, k]`` (optional) marks the entries that count; the mean is then over used entries only
    (NaN where a resample holds none).
    """
    if used is None:
        return counts @ values / counts.shape[1]
    v = np.where(used, values, 0.0)
    num = counts @ v
    den = counts @ used.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def percentile_interval(samples: FloatArray, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Percentile interval along axis 0 (NaN resamples ignored)."""
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanpercentile(samples, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def prepare_correct(correct: FloatArray, policy: str) -> tuple[FloatArray, NDArray[np.bool_] | None]:
    """Apply the error policy to a ``correct[n, k]`` matrix (NaN = error)."""
    error_policy_note(policy)  # validates
    c = np.asarray(correct, dtype=np.float64)
    errors = np.isnan(c)
    if policy == "wrong":
        return np.where(errors, 0.0, c), None
    return np.where(errors, 0.0, c), ~errors


def _point_means(values: FloatArray, used: NDArray[np.bool_] | None) -> FloatArray:
    if used is None:
        return np.asarray(values.mean(axis=0), dtype=np.float64)
    den = used.sum(axis=0)
    num = np.where(used, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def paired_bootstrap(
    correct: FloatArray,
    cost: FloatArray,
    names: Sequence[str],
    *,
    B: int = DEFAULT_B,
    seed: int = 0,
    level: float = 0.95,
    error_policy: str = "wrong",
    pairs: Sequence[tuple[str, str]] | None = None,
    indices: IntArray | None = None,
) -> BootstrapResult:
    """Paired bootstrap CIs for each strategy's accuracy and mean cost, and for differences.

    ``correct[n, k]``: 1/0 per query and strategy, NaN for an error sample; ``cost[n, k]``: USD per
    query. ``pairs``: differences to compute as ``(a, b)`` meaning ``a - b``; default: every strategy
    against the first one. ``indices``: an explicit ``[B, n]`` index matrix (tests; otherwise drawn
    from ``seed``).
    """
    correct = np.asarray(correct, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    if correct.ndim == 1:
        correct, cost = correct[:, None], cost[:, None]
    n, k = correct.shape
    if cost.shape != (n, k) or len(names) != k:
        raise ValueError(f"shapes disagree: correct {correct.shape}, cost {cost.shape}, {len(names)} names")
    if len(set(names)) != k:
        raise ValueError(f"strategy names must be unique: {list(names)}")
    idx = resample_indices(n, B, seed) if indices is None else np.asarray(indices, dtype=np.int64)
    counts = index_counts(idx, n)
    acc_vals, used = prepare_correct(correct, error_policy)
    acc_b = resampled_means(counts, acc_vals, used)
    cost_b = resampled_means(counts, cost, used)
    acc_hat, cost_hat = _point_means(acc_vals, used), _point_means(cost, used)
    acc_lo, acc_hi = percentile_interval(acc_b, level)
    cost_lo, cost_hi = percentile_interval(cost_b, level)
    n_err = np.isnan(correct).sum(axis=0)
    stats = tuple(
        StrategyStats(name=names[j], n=n, n_errors=int(n_err[j]),
                      n_used=int(n if used is None else used[:, j].sum()),
                      accuracy=Interval(float(acc_hat[j]), float(acc_lo[j]), float(acc_hi[j])),
                      cost=Interval(float(cost_hat[j]), float(cost_lo[j]), float(cost_hi[j])))
        for j in range(k)
    )
    pos = {nm: j for j, nm in enumerate(names)}
    want = list(pairs) if pairs is not None else [(nm, names[0]) for nm in names[1:]]
    diffs = []
    for a, b in want:
        ia, ib = pos[a], pos[b]
        da = acc_b[:, ia] - acc_b[:, ib]
        dc = cost_b[:, ia] - cost_b[:, ib]
        (dlo, clo), (dhi, chi) = percentile_interval(np.stack([da, dc], axis=1), level)
        diffs.append(Difference(
            a=a, b=b,
            accuracy=Interval(float(acc_hat[ia] - acc_hat[ib]), float(dlo), float(dhi)),
            cost=Interval(float(cost_hat[ia] - cost_hat[ib]), float(clo), float(chi)),
        ))
    return BootstrapResult(strategies=stats, differences=tuple(diffs), B=int(idx.shape[0]), seed=seed,
                           level=level, error_policy=error_policy)
