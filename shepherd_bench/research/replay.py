"""Offline replay: evaluate hint policies on a hint grid without another model call.

A grid (``shepherd_bench.grid``) holds, per query and hint level, the graded SLM continuation(s) and the
token counts of the LLM call that a live run would have made. A policy picks one level per query (or,
for a cascade, two); its outcome is that level's correctness (the mean over samples) and its cost,
priced now from the price table:

- LLM: ``llm_input_tokens * p_in + hint_tokens * p_out`` (hint 0 = no LLM call = 0; the full answer's
  ``hint_tokens`` is its output length). Cached-input discounts are not applied (a grid cannot know them).
- SLM: ``slm_input_tokens * p_in + slm_output_tokens * p_out`` with the SLM price (free by default).

A level "succeeds" for a query when at least half of its samples are correct (majority vote; with one
sample: that sample). Policies:

``slm``, ``llm``, ``fixed:F`` (a grid level: a fraction, or a token count on a token grid),
``tokens:K`` (hint of K tokens, rounded up to the next grid level of each query), ``oracle`` (smallest
successful hint; no hint when none succeeds), ``oracle-route`` (SLM when it succeeds, else the full LLM
answer: the router's oracle label), ``oracle-cascade`` (SLM first; the full LLM answer whenever the SLM
failed, both paid), ``cascade:SCORE`` (SLM first; a confidence score from its answer and a threshold
swept into a curve; see ``SCORES``), ``route:ROUTER`` (a registered router, ``route-ROUTER``, scoring the
query text alone, cross-fitted k-fold by query; threshold swept), ``predicted:PATH`` (a saved two-stage
predictor, threshold swept), ``predicted:cv`` (the predictor cross-fitted on this grid, k-fold by query;
``predicted:cv-huber`` / ``predicted:cv-classes`` fix its stage 2 instead of choosing by inner CV),
``transfer:GRID`` (the predictor fitted on another task's grid), ``fixed-curve`` (every grid level as one
curve). ``--export-labels`` writes the routing labels (SLM and LLM correct per query) that the learned
routers and ``cascade-frugal`` read live.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .outcomes import (  # noqa: F401 - re-exported: the replay's public names
    FULL,
    OUTCOME_COLS,
    SHORT_ANSWER_TOKENS,
    Curve,
    PolicyResult,
    Pricing,
    ReplayError,
    _number,
    _one_per_query,
    answer_sanity,
    cascade_rows,
    curve_matched_cost,
    fixed_rows,
    level_table,
    llm_rows,
    md_table,
    oracle_cascade_rows,
    oracle_route_rows,
    oracle_rows,
    pd_index,
    queries_of,
    result,
    single_policy,
    slm_rows,
    token_rows,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..analysis.matched import MatchedCost


# --- scores for routers and cascades ------------------------------------------------------------------

ScoreFn = Callable[["pd.DataFrame"], "pd.Series"]
"""A confidence score per query from what a live strategy may see (SLM samples at level 0, the prompt);
higher = more confident in the SLM. Cascades escalate where score < threshold; routers send to the LLM
where score < threshold. The extension point for the baselines' score functions: ``SCORES[name] = fn``
(``fn(grid_rows) -> Series indexed by query_id``)."""


def _level0(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["level"] == 0) & ~df["full"].astype(bool)]


def score_logprob(df: pd.DataFrame) -> pd.Series:
    z = _level0(df)
    if z["slm_mean_logprob"].isna().all():
        raise ReplayError("score 'logprob' needs SLM log-probabilities at level 0 (grids built by this "
                          "version ask for them)")
    return z.groupby("query_id")["slm_mean_logprob"].mean()


def score_agreement(df: pd.DataFrame) -> pd.Series:
    z = _level0(df)
    if z.groupby("query_id").size().max() < 2:
        raise ReplayError("score 'agreement' needs >= 2 SLM samples per query (grid --samples 3)")
    key = z["extracted"].fillna(z["text"].str.strip())
    return z.assign(key=key).groupby("query_id")["key"].agg(lambda s: s.value_counts().iloc[0] / len(s))


def score_short(df: pd.DataFrame) -> pd.Series:
    """Shorter SLM answers = more confident (a weak, cheap baseline)."""
    return -_level0(df).groupby("query_id")["slm_output_tokens"].mean()


SCORES: dict[str, ScoreFn] = {"logprob": score_logprob, "agreement": score_agreement, "short": score_short}


def thresholds(score: pd.Series, points: int = 21) -> list[float]:
    import numpy as np

    qs = np.unique(np.quantile(score.to_numpy(dtype=float), np.linspace(0, 1, points)))
    return [-math.inf, *[float(x) for x in qs], math.inf]


# --- policy results -----------------------------------------------------------------------------------

def replayable_strategies(kind: str) -> list[str]:
    """The names (without the ``kind-`` prefix) of the registered ``kind`` strategies, routers or cascades,
    that implement the replay protocol (``replay_scores``)."""
    from ..strategies import get_strategy, strategy_names

    return [n.removeprefix(f"{kind}-") for n in strategy_names()
            if n.startswith(f"{kind}-") and hasattr(get_strategy(n), "replay_scores")]


def cascade_scores(name: str, df: pd.DataFrame, lt: pd.DataFrame, grid: Path, seed: int = 0) -> pd.Series:
    """``cascade:NAME``'s confidence per query: a built-in score of the SLM's recorded answer (``SCORES``),
    else the registered cascade ``cascade-NAME``'s replay protocol, ``replay_scores(labels, *, seed,
    folds, params)``: one score per labelled query from its ``text`` and ``slm_answer`` (the SLM's level-0
    answer; a learned scorer fits on the other folds only), higher = keep the SLM's answer."""
    import numpy as np
    import pandas as pd

    from ..strategies import get_strategy

    if name in SCORES:
        return SCORES[name](df)
    registered = replayable_strategies("cascade")
    if name not in registered:
        raise ReplayError(f"unknown score '{name}' for cascade; known: {', '.join(sorted({*SCORES, *registered}))} "
                          f"(a registered cascade replays when it implements replay_scores)")
    fn = get_strategy(f"cascade-{name}").replay_scores  # type: ignore[attr-defined]
    rows = routing_labels(lt, df, grid)
    return pd.Series(np.asarray(fn(rows, seed=seed, folds=ROUTE_FOLDS), dtype=float),
                     index=pd.Index([r["query_id"] for r in rows], name="query_id"))


def score_curve(name: str, df: pd.DataFrame, lt: pd.DataFrame, grid: Path) -> Curve:
    """A cascade (SLM first, escalate where the score is below the threshold) swept over the thresholds
    of a score (``cascade_scores``)."""
    score = cascade_scores(name, df, lt, grid).reindex(queries_of(lt))
    curve = Curve(f"cascade:{name}")
    for t in thresholds(score.fillna(score.min())):
        low = score.fillna(-math.inf) < t
        curve.points.append(result(f"cascade:{name}@{t:.4g}", cascade_rows(lt, low)))
        curve.labels.append(f"{t:.4g}")
    return curve


def routing_labels(lt: pd.DataFrame, df: pd.DataFrame, grid: Path) -> list[dict[str, Any]]:
    """One routing label per query, as ``baselines.labels`` reads them: the user turn, whether the SLM
    (level 0) and the LLM (its full answer) succeeded, and the SLM's first level-0 answer."""
    from .grid import load_llm_answers

    llm = load_llm_answers(grid)
    s, f = slm_rows(lt).set_index("query_id"), llm_rows(lt).set_index("query_id")
    first = _level0(df).sort_values("sample").drop_duplicates("query_id").set_index("query_id")["text"]
    missing = [q for q in s.index if not llm.get(q, {}).get("prompt")]
    if missing:
        raise ReplayError(f"{grid}: no prompt recorded for {len(missing)} queries (e.g. {missing[0]!r}) in "
                          f"llm.jsonl; routers need the query text")
    return [{"query_id": q, "text": str(llm[q]["prompt"]), "slm_correct": bool(s.at[q, "acc"] >= 0.5),
             "llm_correct": bool(f.at[q, "acc"] >= 0.5), "slm_answer": str(first.get(q, "") or "")}
            for q in s.index]


ROUTE_FOLDS = 5


def router_curve(name: str, df: pd.DataFrame, lt: pd.DataFrame, grid: Path, seed: int = 0) -> Curve:
    """``route:NAME``: the registered router ``route-NAME`` scores every query from its text alone (learned
    routers cross-fitted, k folds by query, so no query is scored by a router fitted on its label); the
    queries with score >= threshold get the full LLM answer, the rest the SLM's; swept over thresholds."""
    import numpy as np
    import pandas as pd

    from ..strategies import get_strategy

    if name in SCORES:
        raise ReplayError(f"route:{name}: the '{name}' score reads the SLM's own answer, which a router "
                          f"does not have (it decides before any model runs); use cascade:{name}, or a "
                          f"router: route:random, route:knn, route:logistic")
    cls = get_strategy(name if name.startswith("route-") else f"route-{name}")
    fn = getattr(cls, "replay_scores", None)
    if fn is None:
        raise ReplayError(f"strategy '{cls.name}' cannot be replayed from a grid (it has no replay_scores)")
    rows = routing_labels(lt, df, grid)
    score = pd.Series(np.asarray(fn(rows, seed=seed, folds=ROUTE_FOLDS), dtype=float),
                      index=pd.Index([r["query_id"] for r in rows], name="query_id"))
    curve = Curve(f"route:{name}")
    # thresholds rounded to the 4 digits of their labels, so a label replays exactly
    inner = sorted({float(f"{t:.4g}") for t in thresholds(score) if math.isfinite(t)}, reverse=True)
    for t in [math.inf, *inner, -math.inf]:
        out = token_rows(lt, (score >= t).map({True: FULL, False: 0}))
        curve.points.append(result(f"route:{name}@{t:.4g}", out))
        curve.labels.append(f"{t:.4g}")
    return curve


def fixed_curve(lt: pd.DataFrame) -> Curve:
    curve = Curve("fixed-curve")
    for level in sorted(lt.loc[~lt["full"] | (lt["level"] == 1.0), "level"].unique()):
        try:
            curve.points.append(result(f"fixed:{level:g}", fixed_rows(lt, float(level))))
            curve.labels.append(f"{level:g}")
        except ReplayError:
            continue  # a token level some queries do not reach
    return curve


def curve_policy(spec: str, df: pd.DataFrame, lt: pd.DataFrame, grid: Path, pricing: Pricing) -> Curve | None:
    name, _, arg = spec.partition(":")
    if spec == "fixed-curve":
        return fixed_curve(lt)
    if name == "cascade":
        return score_curve(arg, df, lt, grid)
    if name == "route":
        return router_curve(arg, df, lt, grid)
    if name == "predicted":
        from ..predictor.evaluate import cross_validated_curve, predicted_curve

        if arg in ("cv", "cv-huber", "cv-classes"):  # stage 2 chosen by inner CV, or one variant
            return cross_validated_curve(grid, df, lt, pricing, stage2=arg.partition("-")[2] or "auto")
        return predicted_curve(Path(arg), df, lt, grid, pricing)
    if name == "transfer":
        from ..predictor.evaluate import TrainOptions, transfer

        return transfer(Path(arg), grid, TrainOptions(), pricing)
    return None


# --- the report ---------------------------------------------------------------------------------------

DEFAULT_POLICIES = ("slm", "llm", "oracle", "oracle-cascade", "oracle-route", "fixed-curve")


@dataclass
class Replay:
    grid: Path
    manifest: dict[str, Any]
    pricing: Pricing
    df: pd.DataFrame
    lt: pd.DataFrame
    singles: list[PolicyResult] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    sha256: str = ""  # of the grid's rows file (GridStore.sha256), stated by every exported run


def open_replay(grid: Path, prices_path: Path | None = None, llm_price: str | None = None,
                slm_price: str | None = None) -> Replay:
    from ..prices import load_prices
    from .grid import GridStore, grid_dir, load_grid, load_manifest

    manifest = load_manifest(grid)
    table = load_prices(prices_path)
    llm = llm_price or manifest.get("llm", {}).get("price") or "embedded-llm"
    slm = slm_price or manifest.get("slm", {}).get("price") or "embedded-slm"
    pricing = Pricing(table.get(llm), table.get(slm))
    df = load_grid(grid)
    if df.empty:
        raise ReplayError(f"grid {grid} has no rows yet")
    return Replay(Path(grid), manifest, pricing, df, level_table(df, pricing),
                  sha256=GridStore(grid_dir(grid)).sha256())


def run_policies(rp: Replay, policies: list[str]) -> Replay:
    early = bool(rp.manifest.get("spec", {}).get("early_stop"))
    for spec in policies:
        if early and not spec.startswith(("oracle", "predicted")) and spec not in ("slm", "llm"):
            raise ReplayError(f"{rp.grid} was built with --early-stop: later levels are missing, so "
                              f"{spec!r} cannot be replayed (only slm, llm and oracle policies)")
        curve = curve_policy(spec, rp.df, rp.lt, rp.grid, rp.pricing)
        if curve is not None:
            rp.curves.append(curve)
        else:
            rp.singles.append(single_policy(spec, rp.df, rp.lt))
    return rp


def hint_distribution(lt: pd.DataFrame) -> dict[str, Any]:
    """Oracle hint sizes: share of queries needing no hint, needing some, solved only by the full
    answer, never solved; and quartiles of n* (tokens and fraction of the LLM answer) among hinted."""
    o = oracle_rows(lt)
    solved = o["acc"] >= 0.5
    none = solved & (o["hint_tokens"] == 0) & ~o["full"]
    full = solved & o["full"]
    some = solved & ~none & ~full
    hinted = o[some]
    frac = hinted["hint_tokens"] / lt.groupby("query_id")["llm_output_tokens"].first().reindex(hinted["query_id"]).to_numpy()
    n = len(o)
    return {
        "n": n, "no_hint": float(none.mean()), "partial_hint": float(some.mean()), "full_answer": float(full.mean()),
        "unsolved": float((~solved).mean()),
        "no_hint_among_solved": float(none.sum() / max(int(solved.sum()), 1)),
        "hint_tokens_quartiles": [float(x) for x in hinted["hint_tokens"].quantile([0.25, 0.5, 0.75])] if len(hinted) else [],
        "hint_fraction_quartiles": [float(x) for x in frac.quantile([0.25, 0.5, 0.75])] if len(hinted) else [],
    }


def claim_rows(rp: Replay) -> list[dict[str, Any]]:
    """The paper's claim: oracle shepherding <= oracle cascading <= oracle routing in cost."""
    pols = {p.name: p.summary() for p in rp.singles}
    for name in ("oracle", "oracle-cascade", "oracle-route"):
        if name not in pols:
            pols[name] = single_policy(name, rp.df, rp.lt).summary()
    return [pols["oracle"], pols["oracle-cascade"], pols["oracle-route"]]


def matched_costs(rp: Replay, target: str, B: int, seed: int) -> dict[str, MatchedCost]:
    """Cost at matched accuracy (vs LLM-only) of every curve, by curve name, with the per-resample costs."""
    return {c.name: curve_matched_cost(c, rp.lt, target, B, seed) for c in rp.curves if c.points}


def matched_rows(rp: Replay, target: str, B: int, seed: int,
                 costs: dict[str, MatchedCost] | None = None) -> list[dict[str, Any]]:
    """The same as table rows (``costs``: already computed by ``matched_costs``)."""
    costs = matched_costs(rp, target, B, seed) if costs is None else costs
    return [{"curve": c.name, "points": len(c.points), **costs[c.name].to_json()} for c in rp.curves
            if c.name in costs]


def matched_and_claims(rp: Replay, target: str, B: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The matched-cost rows and the paper's claims of a replay, from one bootstrap of every curve."""
    from .claims import claims as paper_claims

    costs = matched_costs(rp, target, B, seed)
    return matched_rows(rp, target, B, seed, costs), paper_claims(rp, target, B, seed, costs=costs)


# --- formatting and the command -----------------------------------------------------------------------

def _policy_line(s: dict[str, Any]) -> list[Any]:
    return [s["policy"], s["accuracy"], 1000 * s["cost_per_query"], s["llm_tokens_per_query"],
            s["slm_tokens_per_query"], s["llm_share"], s.get("short_share"), s.get("cut_share"),
            s.get("no_answer_share"), s["note"]]


POLICY_HEADERS = ["policy", "accuracy", "$ per 1k queries", "LLM tokens/q", "SLM tokens/q", "LLM share",
                  f"answers < {SHORT_ANSWER_TOKENS} tok", "cut at max_tokens", "no answer", "note"]


def render_markdown(rp: Replay, matched: list[dict[str, Any]], claims: list[dict[str, Any]] | None = None, *,
                    title: str | None = None, preamble: str = "") -> str:
    m = rp.manifest
    n = rp.lt["query_id"].nunique()
    out = [f"# {title or f'Replay of {rp.grid}'}", "", *([preamble, ""] if preamble else []),
           f"task {m.get('task', '?')}, {n} queries; LLM priced as {rp.pricing.llm.name}, SLM as "
           f"{rp.pricing.slm.name}; level success = majority of samples correct", ""]
    if rp.singles:
        out += ["## Policies", "", md_table(POLICY_HEADERS, [_policy_line(p.summary()) for p in rp.singles]), ""]
    claim = claim_rows(rp)
    holds = (claim[0]["cost_per_query"] <= claim[1]["cost_per_query"] + 1e-15,
             claim[1]["cost_per_query"] <= claim[2]["cost_per_query"] + 1e-15)
    out += ["## Oracle bounds (claim: shepherding <= cascading <= routing in cost)", "",
            md_table(POLICY_HEADERS, [_policy_line(s) for s in claim]), "",
            f"shepherding <= cascading: {'holds' if holds[0] else 'DOES NOT hold'}; "
            f"cascading <= routing: {'holds' if holds[1] else 'DOES NOT hold'} "
            f"(accuracies {claim[0]['accuracy']:.4f} / {claim[1]['accuracy']:.4f} / {claim[2]['accuracy']:.4f})", ""]
    h = hint_distribution(rp.lt)
    out += ["## Oracle hint sizes", "", md_table(
        ["no hint", "partial hint", "full answer", "unsolved", "no hint among solved", "n* tokens q25/q50/q75",
         "n* fraction q25/q50/q75"],
        [[h["no_hint"], h["partial_hint"], h["full_answer"], h["unsolved"], h["no_hint_among_solved"],
          "/".join(f"{x:g}" for x in h["hint_tokens_quartiles"]),
          "/".join(f"{x:.2f}" for x in h["hint_fraction_quartiles"])]]), ""]
    for c in rp.curves:
        rows = [[lab, *_policy_line(p.summary())[1:6]] for lab, p in zip(c.labels, c.points, strict=True)]
        out += [f"## Curve {c.name}", "", md_table(["point", *POLICY_HEADERS[1:6]], rows), ""]
    if matched:
        out += ["## Cost at matched accuracy (paired bootstrap)", "", md_table(
            ["curve", "target", "target acc", "$ per 1k q", "95% CI", "reduction vs LLM", "not reached"],
            [[r["curve"], r["target"], r["target_accuracy"], _k(r["cost"]),
              f"{_k(r['low'])}..{_k(r['high'])}", r["reduction"], r["not_reached_fraction"]] for r in matched]), ""]
    if claims:
        from .claims import claims_markdown

        out += ["## The shepherding paper's claims on this grid (paired bootstrap, same resamples)", "",
                claims_markdown(claims), "",
                "holds / does not hold: the 95% interval lies wholly on one side; inconclusive: it straddles.", ""]
    return "\n".join(out)


def _k(x: float | None) -> str:
    return "not reached" if x is None else f"{1000 * x:.4g}"


def replay_json(rp: Replay, matched: list[dict[str, Any]], claims: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"claims": claims or [],
        "grid": str(rp.grid), "task": rp.manifest.get("task"),
        "prices": {"llm": rp.pricing.llm.name, "slm": rp.pricing.slm.name},
        "policies": [p.summary() for p in rp.singles],
        "oracle_claim": claim_rows(rp), "hint_distribution": hint_distribution(rp.lt),
        "curves": {c.name: [p.summary() for p in c.points] for c in rp.curves}, "matched": matched,
    }


def add_replay_parser(sub: Any) -> Any:
    """``shepherd-bench replay``: hook with ``add_replay_parser(sub)`` and ``COMMANDS["replay"] = cmd_replay``."""
    p = sub.add_parser("replay", help="evaluate hint policies offline on a hint grid (no model calls)")
    p.add_argument("--grid", type=Path, required=True, help="grid folder built by `shepherd-bench grid`")
    p.add_argument("--policy", action="append", metavar="POLICY",
                   help="slm | llm | oracle | oracle-route | oracle-cascade | fixed:F | tokens:K | fixed-curve | "
                   "cascade:SCORE (logprob, agreement, short, or a registered cascade-NAME with replay_scores, "
                   "e.g. frugal) | route:ROUTER | predicted:PATH | predicted:cv[-huber|-classes] | transfer:GRID "
                   "(repeatable; default: the oracle set and fixed-curve)")
    p.add_argument("--format", choices=["md", "json"], default="md")
    p.add_argument("--prices", type=Path, help="price table JSON (default: leaderboard/prices.json)")
    p.add_argument("--llm-price", help="price-table name for LLM tokens (default: the grid's)")
    p.add_argument("--slm-price", help="price-table name for SLM tokens (default: the grid's)")
    p.add_argument("--target", default="llm", help="matched-accuracy target: llm, 0.95 (of LLM-only), gap:0.8")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the report here")
    p.add_argument("--export-runs", type=Path, metavar="DIR",
                   help="also write each policy (and curve point) as a run folder under DIR, for "
                   "`shepherd-bench report` and the leaderboard")
    p.add_argument("--export-labels", type=Path, metavar="FILE",
                   help="also write one routing label per query (text, slm_correct, llm_correct, slm_answer) "
                   "as JSONL, the -S labels= file of route-knn, route-logistic and cascade-frugal")
    return p


def cmd_replay(args: argparse.Namespace) -> int:
    import json

    rp = open_replay(args.grid, args.prices, args.llm_price, args.slm_price)
    run_policies(rp, list(args.policy or DEFAULT_POLICIES))
    matched, found = matched_and_claims(rp, args.target, args.resamples, args.seed)
    if args.format == "json":
        text = json.dumps(replay_json(rp, matched, found), indent=2, sort_keys=True, default=str)
    else:
        text = render_markdown(rp, matched, found)
    if args.out:
        args.out.write_text(text + "\n")
    if getattr(args, "export_labels", None):
        from ..store import write_text_atomic

        labels = routing_labels(rp.lt, rp.df, rp.grid)
        write_text_atomic(args.export_labels, "".join(json.dumps(r, sort_keys=True) + "\n" for r in labels))
        print(f"wrote {len(labels)} routing labels to {args.export_labels}", file=sys.stderr)
    if getattr(args, "export_runs", None):
        from .export import export_runs

        for path in export_runs(rp, args.export_runs):
            print(f"exported {path}", file=sys.stderr)
    print(text)
    return 0
