"""Outcomes of hint policies on a grid: the per query x level table, the rows a policy picks, its
result and curve. The primitives shared by the replay (``shepherd_bench.replay``), the predictor's
evaluation and the claims table; this module imports neither of them.

Cost of a row: LLM ``llm_input_tokens * p_in + hint_tokens * p_out`` (hint 0 = no LLM call = 0; the full
answer's ``hint_tokens`` is its output length); SLM ``slm_input_tokens * p_in + slm_output_tokens * p_out``.
A level "succeeds" for a query when at least half of its samples are correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..analysis.matched import MatchedCost
    from ..prices import Price


FULL = -1  # a hint decision meaning "the LLM answers in full"


class ReplayError(UserError, ValueError):
    """A policy cannot be replayed on this grid; the message names the fix."""


# --- per query x level table --------------------------------------------------------------------------

@dataclass(frozen=True)
class Pricing:
    llm: Price
    slm: Price


def level_table(df: pd.DataFrame, pricing: Pricing) -> pd.DataFrame:
    """One row per (query, level): mean correctness over samples (errors = wrong), success, costs, and
    the answer-shape shares (cut at ``max_tokens``, nothing extractable)."""
    import pandas as pd

    d = df.copy()
    d["correct"] = d["correct"].fillna(0.0).astype(float)
    finish = d["answer_finish_reason"] if "answer_finish_reason" in d else pd.Series("", index=d.index)
    d["cut"] = (finish == "length").astype(float).where(finish.fillna("") != "")  # NaN: not recorded
    d["no_answer"] = (d["status"] == "no_answer").astype(float) if "status" in d else 0.0
    agg = d.groupby(["query_id", "level"], sort=True).agg(
        acc=("correct", "mean"), n_samples=("correct", "size"), hint_tokens=("hint_tokens", "first"),
        full=("full", "first"), llm_input_tokens=("llm_input_tokens", "first"),
        llm_output_tokens=("llm_output_tokens", "first"), slm_input_tokens=("slm_input_tokens", "mean"),
        slm_output_tokens=("slm_output_tokens", "mean"), cut=("cut", "mean"), no_answer=("no_answer", "mean"),
    ).reset_index()
    agg["full"] = agg["full"].astype(bool)
    agg["success"] = agg["acc"] >= 0.5
    called = (agg["hint_tokens"] > 0) | agg["full"]
    agg["llm_cost"] = called * (agg["llm_input_tokens"] * pricing.llm.input
                                + agg["hint_tokens"] * pricing.llm.output) / 1e6
    agg["slm_cost"] = (agg["slm_input_tokens"] * pricing.slm.input
                       + agg["slm_output_tokens"] * pricing.slm.output) / 1e6
    agg["cost"] = agg["llm_cost"] + agg["slm_cost"]
    agg["llm_tokens"] = called * (agg["llm_input_tokens"] + agg["hint_tokens"])
    agg["slm_tokens"] = agg["slm_input_tokens"] + agg["slm_output_tokens"]
    return agg


OUTCOME_COLS = ["query_id", "level", "hint_tokens", "full", "acc", "cost", "llm_cost", "slm_cost",
                "llm_tokens", "slm_tokens", "slm_input_tokens", "slm_output_tokens", "cut", "no_answer"]


def _one_per_query(rows: pd.DataFrame, queries: pd.Index, what: str) -> pd.DataFrame:
    out = rows.drop_duplicates("query_id").set_index("query_id").reindex(queries)
    missing = out["acc"].isna()
    if missing.any():
        raise ReplayError(f"{what}: {int(missing.sum())} queries have no such row in the grid "
                          f"(e.g. {list(out.index[missing])[:3]}); an early-stopped grid only supports oracle "
                          f"policies; rebuild without --early-stop for fixed levels")
    return out.reset_index()[OUTCOME_COLS]


def queries_of(lt: pd.DataFrame) -> pd.Index:
    import pandas as pd

    return pd.Index(sorted(lt["query_id"].unique()), name="query_id")


def slm_rows(lt: pd.DataFrame) -> pd.DataFrame:
    return _one_per_query(lt[(lt["level"] == 0) & ~lt["full"]], queries_of(lt), "slm (level 0)")


def llm_rows(lt: pd.DataFrame) -> pd.DataFrame:
    return _one_per_query(lt[lt["full"]].sort_values("level"), queries_of(lt), "llm (the full LLM answer)")


def fixed_rows(lt: pd.DataFrame, level: float) -> pd.DataFrame:
    levels = sorted(lt["level"].unique())
    if not any(math.isclose(level, x) for x in levels):
        shown = ", ".join(f"{x:g}" for x in levels[:20])
        raise ReplayError(f"level {level:g} is not on this grid (levels: {shown}); use tokens:K to round up")
    return _one_per_query(lt[(lt["level"] - level).abs() < 1e-9], queries_of(lt), f"fixed:{level:g}")


def token_rows(lt: pd.DataFrame, hints: pd.Series) -> pd.DataFrame:
    """Per query the smallest grid level whose hint has at least the query's decided tokens
    (``hints``: query_id -> tokens, or FULL); past the longest level, the full answer."""
    t = lt.join(hints.rename("want"), on="query_id")
    t = t[t["want"].notna()]
    ok = t["full"] | ((t["want"] != FULL) & (t["hint_tokens"] >= t["want"]))
    chosen = t[ok].sort_values(["query_id", "hint_tokens", "full", "level"])
    return _one_per_query(chosen, pd_index(hints), "tokens")


def relative_hint_rows(lt: pd.DataFrame, low: float = 0.1, high: float = 0.3) -> pd.DataFrame:
    """Per query the hinted grid level whose hint is ``low``-``high`` of the query's own LLM answer, the
    one nearest the middle of that range (ties: the smaller hint); a query with no such level (its
    answer too short or too long for the grid's levels) is left out. Columns: the level table's."""
    t = lt[~lt["full"] & (lt["hint_tokens"] > 0) & (lt["llm_output_tokens"] > 0)]
    frac = t["hint_tokens"] / t["llm_output_tokens"]
    inside = (frac >= low - 1e-9) & (frac <= high + 1e-9)
    t = t[inside].assign(_gap=(frac[inside] - (low + high) / 2).abs().round(9))  # 10% and 30% tie
    chosen = t.sort_values(["query_id", "_gap", "hint_tokens"]).drop_duplicates("query_id")
    return chosen.drop(columns="_gap").reset_index(drop=True)


def pd_index(hints: pd.Series) -> pd.Index:
    import pandas as pd

    return pd.Index(sorted(hints.index), name="query_id")


# --- oracle policies ----------------------------------------------------------------------------------

def oracle_rows(lt: pd.DataFrame) -> pd.DataFrame:
    """Smallest successful hint per query (ties: the cheaper row); no hint where nothing succeeds."""
    good = lt[lt["success"]].sort_values(["query_id", "hint_tokens", "cost"])
    best = good.drop_duplicates("query_id")
    rest = slm_rows(lt)
    rest = rest[~rest["query_id"].isin(best["query_id"])]
    import pandas as pd

    return pd.concat([best[OUTCOME_COLS], rest]).sort_values("query_id").reset_index(drop=True)


def oracle_route_rows(lt: pd.DataFrame) -> pd.DataFrame:
    s, f = slm_rows(lt), llm_rows(lt)
    import pandas as pd

    slm_ok = (s["acc"] >= 0.5).to_numpy()
    return pd.concat([s[slm_ok], f[~slm_ok]]).sort_values("query_id").reset_index(drop=True)


def cascade_rows(lt: pd.DataFrame, escalate: pd.Series) -> pd.DataFrame:
    """SLM first; where ``escalate`` (per query, aligned with sorted ids) the full LLM answer too.
    The SLM is paid always, the LLM where escalated; correctness is the LLM's where escalated."""
    s, f = slm_rows(lt), llm_rows(lt)
    e = escalate.reindex(s["query_id"]).fillna(False).to_numpy(dtype=bool)
    out = s.copy()
    for col in ("level", "hint_tokens", "full", "acc", "llm_cost", "llm_tokens", "cut", "no_answer"):
        out[col] = s[col].where(~e, f[col])  # the graded answer is the LLM's where escalated
    out["slm_cost"], out["slm_tokens"] = s["slm_cost"], s["slm_tokens"]
    out["cost"] = out["llm_cost"] + out["slm_cost"]
    return out


def oracle_cascade_rows(lt: pd.DataFrame) -> pd.DataFrame:
    s = slm_rows(lt)
    return cascade_rows(lt, (s["acc"] < 0.5).set_axis(s["query_id"]))


SHORT_ANSWER_TOKENS = 15  # an answer this short is a format failure more often than an answer (runs and replays)


def answer_sanity(o: pd.DataFrame) -> dict[str, float | None]:
    """Shares of a policy's graded answers: under ``SHORT_ANSWER_TOKENS`` output tokens (hint +
    continuation, or the full LLM answer), cut at ``max_tokens``, nothing extractable; None if unknown."""
    tokens = o["hint_tokens"] + o["slm_output_tokens"].where(~o["full"].astype(bool), 0.0)
    cut = o["cut"].dropna() if "cut" in o else o["acc"].iloc[:0]
    return {"short_share": float((tokens < SHORT_ANSWER_TOKENS).mean()) if len(o) else None,
            "cut_share": float(cut.mean()) if len(cut) else None,
            "no_answer_share": float(o["no_answer"].mean()) if "no_answer" in o and len(o) else None}


@dataclass
class PolicyResult:
    name: str
    outcome: pd.DataFrame  # one row per query (OUTCOME_COLS)
    note: str = ""

    def summary(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "policy": self.name, "n": len(o), "accuracy": float(o["acc"].mean()),
            "cost_per_query": float(o["cost"].mean()), "llm_tokens_per_query": float(o["llm_tokens"].mean()),
            "slm_tokens_per_query": float(o["slm_tokens"].mean()),
            "llm_share": float(((o["hint_tokens"] > 0) | o["full"]).mean()),
            **answer_sanity(o), "note": self.note,
        }


@dataclass
class Curve:
    name: str
    points: list[PolicyResult] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        correct = np.column_stack([p.outcome["acc"].to_numpy(dtype=float) for p in self.points])
        cost = np.column_stack([p.outcome["cost"].to_numpy(dtype=float) for p in self.points])
        return correct, cost


def curve_matched_cost(curve: Curve, lt: pd.DataFrame, target: str, B: int, seed: int,
                       level: float = 0.95) -> MatchedCost:
    """Cost at matched accuracy of one curve against LLM-only on the same queries (and SLM-only for gap
    targets), with its paired bootstrap interval."""
    from ..analysis.matched import Target, matched_cost

    llm, slm = llm_rows(lt), slm_rows(lt)
    correct, cost = curve.arrays()
    return matched_cost(correct, cost, llm["acc"].to_numpy(float), llm["cost"].to_numpy(float),
                        Target.parse(target), slm_correct=slm["acc"].to_numpy(float), B=B, seed=seed,
                        level=level)


def result(name: str, outcome: pd.DataFrame, note: str = "") -> PolicyResult:
    return PolicyResult(name, outcome.reset_index(drop=True), note)


def single_policy(spec: str, df: pd.DataFrame, lt: pd.DataFrame) -> PolicyResult:
    name, _, arg = spec.partition(":")
    if spec == "slm":
        return result(spec, slm_rows(lt))
    if spec == "llm":
        return result(spec, llm_rows(lt))
    if spec == "oracle":
        return result(spec, oracle_rows(lt), "smallest successful hint per query")
    if spec == "oracle-route":
        return result(spec, oracle_route_rows(lt), "LLM exactly where the SLM fails; SLM not run there")
    if spec == "oracle-cascade":
        return result(spec, oracle_cascade_rows(lt), "SLM always; full LLM where the SLM failed")
    if name == "fixed":
        return result(spec, fixed_rows(lt, _number(arg, spec)))
    if name == "tokens":
        import pandas as pd

        k = int(_number(arg, spec))
        q = queries_of(lt)
        return result(spec, token_rows(lt, pd.Series(k, index=q)), "rounded up to each query's next level")
    raise ReplayError(f"unknown policy {spec!r}; use slm, llm, oracle, oracle-route, oracle-cascade, fixed:F, "
                      f"tokens:K, fixed-curve, cascade:SCORE, route:ROUTER, predicted:PATH, predicted:cv or "
                      f"transfer:GRID")


def _number(arg: str, spec: str) -> float:
    try:
        return float(arg)
    except ValueError:
        raise ReplayError(f"policy {spec!r} needs a number after ':' (e.g. fixed:0.2, tokens:32)") from None


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


