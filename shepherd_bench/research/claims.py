"""The shepherding paper's five claims, measured on one replayed hint grid, each with its interval.

1. Hints of 10-30% of the LLM's answer help: a fixed hint whose median size is 10-30% of the answer,
   paired against SLM-only (accuracy difference); and, as the paper's fractional hints, per query the
   grid level that is 10-30% of that query's own answer, paired against SLM-only on those queries.
2. Oracle shepherding is the cheapest oracle: its cost minus oracle cascading's and oracle routing's.
3. The learned predictor saves against LLM-only at matched accuracy: its cost reduction at the target.
4. Shepherding against the best routing/cascade curve at matched accuracy: the ratio of absolute costs
   (predictor / baseline) and the ratio of savings ((C_LLM - C_pred) / (C_LLM - C_base)).
5. The learned policy's cost is within 1.5x of the oracle's; and adaptive (the predictor) against the
   best fixed hint size (the fixed-hint policies as one curve), as a ratio of costs at the target.

Every interval comes from the same paired percentile bootstrap over queries (the seeded resamples that
``matched_cost`` draws for every curve of the grid), so ratios between curves are paired too. A claim is
"holds" only when its interval excludes the other side; "does not hold" when the interval sits on the
other side; "inconclusive" when it straddles; "not measured" when the grid or the policies replayed
cannot say (e.g. no fixed hint in the 10-30% range, no predictor curve).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..analysis.matched import MatchedCost
    from .outcomes import Curve, PolicyResult
    from .replay import Replay

HOLDS, FAILS, UNSURE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
PREDICTOR_PREFIXES = ("predicted:", "transfer:")
BASELINE_PREFIXES = ("route:", "cascade:")
CLAIM_ONE = "1 hints of 10-30% of the answer help"


def _verdict(low: float | None, high: float | None, good_above: float) -> str:
    """Holds when the whole interval is above ``good_above``, fails when it is wholly below."""
    if low is None and high is None:
        return NOT_MEASURED
    if low is not None and low > good_above:
        return HOLDS
    if high is not None and high < good_above:
        return FAILS
    return UNSURE


def _quantiles(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """Percentile interval where +inf means "not reached" (an end touching it is None)."""
    from ..analysis.matched import percentile_with_inf

    if len(values) == 0:
        return None, None
    alpha = (1.0 - level) / 2.0
    return percentile_with_inf(values, alpha), percentile_with_inf(values, 1 - alpha)


def _fmt_pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _usd(x: float | None) -> str:
    return "not reached" if x is None or not math.isfinite(x) else f"${1000 * x:.3f}"


def hint_fraction(result: PolicyResult, lt: Any) -> float | None:
    """Median hint size as a fraction of the query's LLM answer, over the queries that got a hint."""
    import numpy as np

    o = result.outcome
    lengths = lt.groupby("query_id")["llm_output_tokens"].first().reindex(o["query_id"]).to_numpy(float)
    hinted = (o["hint_tokens"].to_numpy(float) > 0) & (lengths > 0)
    if not hinted.any():
        return None
    frac = o["hint_tokens"].to_numpy(float)[hinted] / lengths[hinted]
    return float(np.median(np.minimum(frac, 1.0)))


def _fixed_singles(rp: Replay) -> list[PolicyResult]:
    return [p for p in rp.singles if p.name.startswith(("tokens:", "fixed:"))]


def _as_curve(name: str, points: list[PolicyResult]) -> Curve:
    from .outcomes import Curve

    c = Curve(name)
    c.points, c.labels = list(points), [p.name for p in points]
    return c


def _resampled_cost(result: PolicyResult, B: int, seed: int) -> np.ndarray:
    """Mean cost of a single policy over the same seeded resamples ``matched_cost`` draws."""
    from ..analysis.bootstrap import index_counts, resample_indices, resampled_means

    cost = result.outcome["cost"].to_numpy(float)[:, None]
    n = len(cost)
    return resampled_means(index_counts(resample_indices(n, B, seed), n), cost)[:, 0]


def claim_one(rp: Replay, B: int, seed: int, level: float) -> list[dict[str, Any]]:
    from .outcomes import slm_rows

    slm = slm_rows(rp.lt)
    rows = []
    for p in _fixed_singles(rp):
        frac = hint_fraction(p, rp.lt)
        if list(p.outcome["query_id"]) != list(slm["query_id"]):
            continue
        d = _accuracy_gain(p.outcome, slm, B, seed, level)
        in_range = frac is not None and 10 <= round(100 * frac) <= 30  # as the percentage is shown
        rows.append({
            "claim": CLAIM_ONE,
            "measure": f"{p.name} (median hint {100 * frac:.0f}% of the answer) - SLM-only, accuracy"
            if frac is not None else f"{p.name} - SLM-only, accuracy",
            "value": f"{_fmt_pts(d.estimate)} pts", "ci": f"[{_fmt_pts(d.low)}, {_fmt_pts(d.high)}]",
            "verdict": _verdict(d.low, d.high, 0.0) if in_range else f"{NOT_MEASURED} (outside 10-30%)",
        })
    if not rows:
        rows.append({"claim": CLAIM_ONE, "measure": "no fixed hint replayed",
                     "value": "n/a", "ci": "n/a", "verdict": NOT_MEASURED})
    return rows + [relative_hint_claim(rp.lt, slm, B, seed, level)]


def relative_hint_claim(lt: Any, slm: Any, B: int, seed: int, level: float) -> dict[str, Any]:
    """Claim 1 with hints sized as the paper sizes them, by fraction of each query's own answer: per query
    the grid level nearest 20% of it (within 10-30%, ``relative_hint_rows``), against SLM-only on the same
    queries (paired). Token-level grids cover only the queries whose answers suit some level."""
    import numpy as np

    from .outcomes import relative_hint_rows

    rel = relative_hint_rows(lt)
    if len(rel) < 2:
        return {"claim": CLAIM_ONE, "measure": f"no grid level is 10-30% of the answer for 2 or more of the "
                f"{len(slm)} queries", "value": "n/a", "ci": "n/a", "verdict": NOT_MEASURED}
    d = _accuracy_gain(rel, slm.set_index("query_id").loc[rel["query_id"]].reset_index(), B, seed, level)
    frac = float(np.median(rel["hint_tokens"].to_numpy(float) / rel["llm_output_tokens"].to_numpy(float)))
    return {"claim": CLAIM_ONE,
            "measure": f"per query the level nearest 20% of its own answer ({len(rel)} of {len(slm)} queries have "
                       f"one; median hint {100 * frac:.0f}%) - SLM-only on those queries, accuracy",
            "value": f"{_fmt_pts(d.estimate)} pts", "ci": f"[{_fmt_pts(d.low)}, {_fmt_pts(d.high)}]",
            "verdict": _verdict(d.low, d.high, 0.0)}


def _accuracy_gain(hinted: Any, slm: Any, B: int, seed: int, level: float) -> Any:
    """Paired-bootstrap accuracy difference of two outcome tables over the same queries, in the same order."""
    import numpy as np

    from ..analysis.bootstrap import paired_bootstrap

    boot = paired_bootstrap(
        np.column_stack([hinted["acc"].to_numpy(float), slm["acc"].to_numpy(float)]),
        np.column_stack([hinted["cost"].to_numpy(float), slm["cost"].to_numpy(float)]),
        ["hint", "slm"], B=B, seed=seed, level=level, pairs=[("hint", "slm")])
    return boot.difference("hint", "slm").accuracy


def claim_two(rp: Replay, B: int, seed: int, level: float) -> list[dict[str, Any]]:
    import numpy as np

    from ..analysis.bootstrap import paired_bootstrap
    from .outcomes import single_policy

    pols = {p.name: p for p in rp.singles}
    res = {n: pols.get(n) or single_policy(n, rp.df, rp.lt) for n in ("oracle", "oracle-cascade", "oracle-route")}
    names = list(res)
    boot = paired_bootstrap(np.column_stack([res[n].outcome["acc"].to_numpy(float) for n in names]),
                            np.column_stack([res[n].outcome["cost"].to_numpy(float) for n in names]),
                            names, B=B, seed=seed, level=level,
                            pairs=[("oracle", "oracle-cascade"), ("oracle", "oracle-route")])
    rows = []
    for other in ("oracle-cascade", "oracle-route"):
        d = boot.difference("oracle", other)
        rows.append({
            "claim": "2 oracle shepherding is the cheapest oracle",
            "measure": f"oracle shepherding - {other}: cost per 1k (accuracy {_fmt_pts(d.accuracy.estimate)} pts)",
            "value": _usd_diff(d.cost.estimate), "ci": f"[{_usd_diff(d.cost.low)}, {_usd_diff(d.cost.high)}]",
            # cheaper: the difference's whole interval below 0 (negated so "above" is good)
            "verdict": _verdict(-d.cost.high, -d.cost.low, 0.0),
        })
    return rows


def _usd_diff(x: float) -> str:
    return f"{'+' if x >= 0 else '-'}${abs(1000 * x):.3f}"


def claims(rp: Replay, target: str = "0.95", B: int = 10000, seed: int = 0, level: float = 0.95,
           costs: dict[str, MatchedCost] | None = None) -> list[dict[str, Any]]:
    """Every claim's rows (claim, measure, value, ci, verdict) for a replay whose policies have run;
    ``costs``: the curves' matched costs already computed with the same target, B, seed and level."""
    from .outcomes import curve_matched_cost

    def matched(c: Curve) -> MatchedCost:
        return (costs or {}).get(c.name) or curve_matched_cost(c, rp.lt, target, B, seed, level)

    rows = claim_one(rp, B, seed, level) + claim_two(rp, B, seed, level)
    preds = [c for c in rp.curves if c.name.startswith(PREDICTOR_PREFIXES) and c.points]
    bases = [c for c in rp.curves if c.name.startswith(BASELINE_PREFIXES) and c.points]
    fixed = _fixed_singles(rp)
    m_pred = {c.name: matched(c) for c in preds}
    m_base = {c.name: matched(c) for c in bases}
    m_fixed = matched(_as_curve("fixed hints", fixed)) if fixed else None
    oracle = next((p for p in rp.singles if p.name == "oracle"), None)
    tgt = next(iter(m_pred.values())).target if m_pred else target
    if not preds:
        rows.append({"claim": "3 the predictor saves vs LLM-only at matched accuracy", "measure": "no predictor curve",
                     "value": "n/a", "ci": "n/a", "verdict": NOT_MEASURED})
    for name, m in m_pred.items():
        rows.append({"claim": "3 the predictor saves vs LLM-only at matched accuracy", "curve": name,
                     "measure": f"{name}: cost reduction at {tgt} ({_usd(m.cost)} per 1k vs {_usd(m.llm_cost)})",
                     "value": _pct(m.reduction), "ci": f"[{_pct(m.reduction_low)}, {_pct(m.reduction_high)}]",
                     "verdict": _verdict(m.reduction_low, m.reduction_high, 0.0)
                     if m.cost is not None else FAILS})
    if not preds:
        for claim in ("4 shepherding vs the best routing / cascade", "5 learned cost within 1.5x of the oracle's"):
            rows.append({"claim": claim, "measure": "no predictor curve", "value": "n/a", "ci": "n/a",
                         "verdict": NOT_MEASURED})
    best = min(m_base.items(), key=lambda kv: math.inf if kv[1].cost is None else kv[1].cost) if m_base else None
    for name, m in m_pred.items():
        if best is None:
            rows.append({"claim": "4 shepherding vs the best routing / cascade", "measure": "no baseline curve",
                         "value": "n/a", "ci": "n/a", "verdict": NOT_MEASURED})
            break
        bname, b = best
        rows += _ratio_rows(name, m, bname, b, level)
    for name, m in m_pred.items():
        if oracle is not None:
            r = _ratio(m.resampled, _resampled_cost(oracle, m.B, seed))
            lo, hi = _quantiles(r, level)
            est = None if m.cost is None else m.cost / oracle.summary()["cost_per_query"]
            rows.append({"claim": "5 learned cost within 1.5x of the oracle's", "curve": name,
                         "measure": f"{name} cost at {tgt} / oracle shepherding cost",
                         "value": _fmt_ratio(est), "ci": f"[{_fmt_ratio(lo)}, {_fmt_ratio(hi)}]",
                         "verdict": ratio_verdict(est, lo, hi, 1.5, m.cost is not None)})
        if m_fixed is not None:
            r = _ratio(m.resampled, m_fixed.resampled)
            lo, hi = _quantiles(r, level)
            est = None if m.cost is None or m_fixed.cost is None else m.cost / m_fixed.cost
            fixed_cost = f"{_usd(m_fixed.cost)} per 1k" if m_fixed.cost is not None else \
                "no fixed hint size reaches the target"
            # fixed hints reaching the target in no resample: every ratio is 0, an interval says nothing
            ci = "n/a" if not r.any() else f"[{_fmt_ratio(lo)}, {_fmt_ratio(hi)}]"
            rows.append({"claim": "5 adaptive vs the best fixed hint size", "curve": name,
                         "measure": f"{name} cost at {tgt} / fixed hints' ({fixed_cost})",
                         "value": _fmt_ratio(est), "ci": ci,
                         "verdict": ratio_verdict(est, lo, hi, 1.0, m.cost is not None)})
    return rows


def ratio_verdict(est: float | None, lo: float | None, hi: float | None, bound: float, a_reached: bool) -> str:
    """Verdict on "a / b below ``bound``" for costs at the target: from the interval when both curves reach
    the target; when only ``a`` does, ``a`` is the cheaper way there (holds); when ``a`` does not, fails."""
    if not a_reached:
        return FAILS
    if est is None:
        return HOLDS
    return _verdict(None if hi is None else -hi, None if lo is None else -lo, -bound)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ratio(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """a / b per resample; a not reached (inf) -> inf, b not reached with a reached -> 0."""
    import numpy as np

    if a is None or b is None:
        return np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.isinf(a), np.inf, np.where(np.isinf(b), 0.0, a / np.where(b > 0, b, np.nan)))
    return r[~np.isnan(r)]


def _ratio_rows(name: str, m: MatchedCost, bname: str, b: MatchedCost, level: float) -> list[dict[str, Any]]:
    import numpy as np

    cost_r = _ratio(m.resampled, b.resampled)
    lo, hi = _quantiles(cost_r, level)
    est = None if m.cost is None or b.cost is None else m.cost / b.cost
    rows = [{"claim": "4 shepherding vs the best routing / cascade", "curve": name,
             "measure": f"{name} / {bname} ({_usd(b.cost)} per 1k): ratio of costs at the target",
             "value": _fmt_ratio(est), "ci": f"[{_fmt_ratio(lo)}, {_fmt_ratio(hi)}]",
             "verdict": ratio_verdict(est, lo, hi, 1.0, m.cost is not None)}]
    sav_est = None
    if est is not None and m.llm_cost > b.cost:  # type: ignore[operator]
        sav_est = (m.llm_cost - m.cost) / (m.llm_cost - b.cost)  # type: ignore[operator]
    s_lo = s_hi = None
    if m.resampled is not None and b.resampled is not None and m.llm_resampled is not None:
        both = np.isfinite(m.resampled) & np.isfinite(b.resampled) & (m.llm_resampled > b.resampled)
        if both.all():  # an interval only when every resample reaches the target on both curves
            s = (m.llm_resampled - m.resampled) / (m.llm_resampled - b.resampled)
            s_lo, s_hi = _quantiles(s, level)
    rows.append({"claim": "4 shepherding vs the best routing / cascade", "curve": name,
                 "measure": f"{name} / {bname}: ratio of savings vs LLM-only",
                 "value": _fmt_ratio(sav_est), "ci": f"[{_fmt_ratio(s_lo)}, {_fmt_ratio(s_hi)}]",
                 "verdict": _verdict(s_lo, s_hi, 1.0) if sav_est is not None else NOT_MEASURED})
    return rows


def claims_markdown(rows: list[dict[str, Any]]) -> str:
    from .outcomes import md_table

    return md_table(["claim", "measure", "value", "95% CI", "on this pair"],
                    [[r["claim"], r["measure"], r["value"], r["ci"], r["verdict"]] for r in rows])
