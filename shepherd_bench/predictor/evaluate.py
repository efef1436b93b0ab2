"""Labels from a grid, honest evaluation (k-fold by query, transfer across tasks) and threshold sweeps.

Labels: ``n*`` = hint tokens of the oracle's choice (the smallest successful level; the full answer's
length when only it succeeds). Queries no level solves (not even the full LLM answer) are labelled
*unsolved*, apart from the SLM-solves-alone ``n* = 0``, and are left out of training, as in the paper:
a never-solved query says nothing about whether a hint would help. They stay in every evaluation, where
the policy's decision for them is paid for like any other. A predicted ``k`` is replayed at the smallest grid level with at least ``k`` tokens.
Reactive models pay for their SLM samples: the level-0 samples' SLM tokens are added to every query, and
a no-hint decision costs nothing more (its answer is one of those samples, scored as level 0 is: the
mean correctness over the level's samples, i.e. the expected correctness of one sample). Live, the
shepherd strategy draws the same samples and answers a no-hint query with its first sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .features import REACTIVE_NAMES
from .model import FULL, HintPredictor, TrainOptions, decisions, train
from .reactive import reactive_table

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..research.outcomes import Curve, Pricing


@dataclass
class GridData:
    """What a predictor learns from: per query (sorted ids) text, label, LLM length, reactive features."""

    query_ids: list[str]
    texts: list[str]
    n_star: list[int]
    llm_len: list[int]
    reactive: np.ndarray | None
    slm_sample_tokens: np.ndarray | None
    rows: pd.DataFrame  # the grid rows
    lt: pd.DataFrame  # the level table
    sampling: dict[str, Any] | None = None  # how the grid drew its level-0 samples (from its manifest)
    solved: list[bool] | None = None  # some level solves the query (False: the "unsolved" label)


def grid_labels(lt: pd.DataFrame) -> pd.DataFrame:
    from ..research.outcomes import oracle_rows

    o = oracle_rows(lt).set_index("query_id")
    solved = o["acc"] >= 0.5
    n_star = o["hint_tokens"].where(solved, 0).astype(int)
    llm_len = lt.groupby("query_id")["llm_output_tokens"].first()
    return n_star.to_frame("n_star").assign(llm_len=llm_len, solved=solved)


def load_grid_data(grid: Path, pricing: Pricing | None = None) -> GridData:
    from ..prices import Price
    from ..research.grid import load_grid, load_llm_answers, load_manifest
    from ..research.outcomes import Pricing, level_table

    rows = load_grid(grid)
    free = Price("free", 0.0, 0.0, 0.0)
    lt = level_table(rows, pricing or Pricing(free, free))
    return grid_data(rows, lt, load_llm_answers(grid), load_manifest(grid).get("spec"))


def grid_data(rows: pd.DataFrame, lt: pd.DataFrame, llm: dict[str, dict[str, Any]],
              spec: dict[str, Any] | None = None) -> GridData:
    lab = grid_labels(lt)
    ids = list(lab.index)
    texts = [str(llm.get(q, {}).get("prompt", "")) for q in ids]
    react = reactive_table(rows).reindex(ids)
    has = react["n_samples"].notna().all() and int(react["n_samples"].min()) >= 2
    return GridData(ids, texts, [int(x) for x in lab["n_star"]], [int(x) for x in lab["llm_len"]],
                    react[list(REACTIVE_NAMES)].to_numpy(float) if has else None,
                    react["slm_sample_tokens"].to_numpy(float) if has else None, rows, lt,
                    reactive_sampling(react, spec) if has else None, [bool(x) for x in lab["solved"]])


def reactive_sampling(react: pd.DataFrame, spec: dict[str, Any] | None) -> dict[str, Any]:
    """What a live run must draw to serve the reactive features: the samples read per query and the
    grid's temperature and seed (None where the manifest does not say)."""
    spec = spec or {}
    temp = spec.get("temperature")
    return {"samples": int(react["n_samples"].min()), "temperature": None if temp is None else float(temp),
            "grid_seed": spec.get("seed")}


def fit(data: GridData, options: TrainOptions, idx: Any = None) -> HintPredictor:
    import numpy as np

    given = np.arange(len(data.texts)) if idx is None else np.asarray(idx)
    i = training_indices(data, given)
    react = None
    if options.reactive:
        if data.reactive is None:
            raise ValueError("reactive features need >= 2 SLM samples at level 0 (grid --samples 3)")
        react = data.reactive[i]
    model = train([data.texts[j] for j in i], [data.n_star[j] for j in i], [data.llm_len[j] for j in i],
                  options, react)
    if options.reactive and data.sampling is not None:
        model.meta["reactive_sampling"] = dict(data.sampling)
    model.meta["unsolved_left_out"] = len(given) - len(i)
    return model


def training_indices(data: GridData, idx: np.ndarray) -> np.ndarray:
    """The queries of ``idx`` a predictor trains on: never-solved ones are not training examples (module
    docstring); all of ``idx`` if none is solved."""
    import numpy as np

    if data.solved is None:
        return idx
    kept = idx[np.asarray([data.solved[j] for j in idx], dtype=bool)]
    return kept if len(kept) else idx


def predict(model: HintPredictor, data: GridData, idx: Any = None) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    i = np.arange(len(data.texts)) if idx is None else np.asarray(idx)
    react = data.reactive[i] if model.reactive and data.reactive is not None else None
    x = model.features([data.texts[j] for j in i], react)
    return model.p_need(x), model.n_hat(x)


def cross_validate(data: GridData, options: TrainOptions, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Out-of-fold p(need) and n-hat per query: each query predicted by a model that never saw it."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import KFold

    n = len(data.texts)
    p, k = np.zeros(n), np.zeros(n)
    for tr, te in KFold(n_splits=min(folds, n), shuffle=True, random_state=seed).split(np.arange(n)):
        model = fit(data, options, tr)
        p[te], k[te] = predict(model, data, te)
    full_above = options.full_fraction * float(np.median(data.llm_len))
    return pd.DataFrame({"p_need": p, "n_hat": k, "n_star": data.n_star, "full_above": full_above},
                        index=pd.Index(data.query_ids, name="query_id"))


def sweep(name: str, preds: pd.DataFrame, data: GridData, pricing: Pricing, reactive: bool,
          points: int = 21) -> Curve:
    """The predictor's operating curve over its two knobs: the threshold on p(need) for a hint and the
    one for the full answer (``decisions``), each over the quantiles of p(need). The 2-D set is reduced
    to its cost-accuracy frontier (non-dominated points), and both end points are always on it: SLM-only
    (no query hinted) and LLM-only (every query gets the full answer), so the curve spans the whole
    range whatever the second stage predicts."""
    import math

    import numpy as np
    import pandas as pd

    from ..analysis.matched import pareto_frontier
    from ..research.outcomes import Curve, level_table, result, token_rows

    lt = level_table(data.rows, pricing)
    # rounded to the 3 digits of their labels, so every point has its own label and a label replays exactly
    raw = [1.01, *np.quantile(preds["p_need"], np.linspace(1, 0, points)).tolist(), 0.0]
    taus = sorted({float(f"{t:.3g}") for t in raw}, reverse=True)
    p_need, n_hat = preds["p_need"].to_numpy(), preds["n_hat"].to_numpy()
    full_above = float(preds["full_above"].iloc[0])
    seen: dict[tuple[int, ...], tuple[str, Any]] = {}
    for tau in taus:
        # a full-answer threshold below the hint threshold acts as the hint threshold itself
        for tf in (math.inf, *[t for t in taus if t >= tau]):
            k = decisions(p_need, n_hat, tau, full_above, tf)
            key = tuple(int(x) for x in k)
            if key in seen:
                continue  # the same decisions: the same point
            out = token_rows(lt, pd.Series(k, index=preds.index))
            if reactive and data.slm_sample_tokens is not None:
                out = _add_sample_cost(out, data, pricing)
            label = f"p>={tau:.3g}" if math.isinf(tf) else f"p>={tau:.3g} full>={tf:.3g}"
            seen[key] = (label, result(f"{name}@{label}", out))
    keys, cands = list(seen), list(seen.values())
    summ = [r.summary() for _, r in cands]
    acc = np.array([x["accuracy"] for x in summ])
    cost = np.array([x["cost_per_query"] for x in summ])
    keep = set(pareto_frontier(acc, cost).tolist())
    n = len(p_need)
    # SLM-only (threshold 1.01: no hint) and LLM-only (threshold 0, full 0: every query the full answer)
    keep.update({keys.index((0,) * n), keys.index((int(FULL),) * n)})
    curve = Curve(name)
    for i in sorted(keep, key=lambda j: (cost[j], acc[j])):
        curve.points.append(cands[i][1])
        curve.labels.append(cands[i][0])
    return curve


def _add_sample_cost(out: pd.DataFrame, data: GridData, pricing: Pricing) -> pd.DataFrame:
    """Reactive: the level-0 samples were paid first (a hint-0 answer is one of them)."""
    import numpy as np

    r = reactive_table(data.rows).reindex(out["query_id"])
    lt0 = data.lt[data.lt["level"] == 0].set_index("query_id").reindex(out["query_id"])
    per = lt0["slm_cost"].to_numpy() / np.maximum(lt0["slm_tokens"].to_numpy(), 1.0)  # avg price per token
    extra_tok = r["slm_sample_tokens"].to_numpy(float)
    own = np.where(out["hint_tokens"].to_numpy() == 0, out["slm_tokens"].to_numpy(), 0.0)
    z = data.rows[(data.rows["level"] == 0) & ~data.rows["full"].astype(bool) & (data.rows["sample"] < 3)]
    paid = z.groupby("query_id")[["slm_input_tokens", "slm_output_tokens"]].sum().reindex(out["query_id"]).fillna(0.0)
    hint0 = out["hint_tokens"].to_numpy() == 0
    out = out.copy()
    for col in ("slm_input_tokens", "slm_output_tokens"):  # the samples replace a hint-0 answer (one of them)
        out[col] = np.where(hint0, 0.0, out[col].to_numpy(float)) + paid[col].to_numpy(float)
    out["slm_tokens"] = out["slm_tokens"] + extra_tok - own
    out["slm_cost"] = out["slm_cost"] + (extra_tok - own) * per
    out["cost"] = out["llm_cost"] + out["slm_cost"]
    return out


def predicted_curve(path: Path, rows: pd.DataFrame, lt: pd.DataFrame, grid: Path, pricing: Pricing) -> Curve:
    """``replay --policy predicted:PATH``: a saved model applied to a grid, threshold swept."""
    import pandas as pd

    from ..research.grid import load_llm_answers

    model = HintPredictor.load(path)
    data = grid_data(rows, lt, load_llm_answers(grid))
    p, k = predict(model, data)
    preds = pd.DataFrame({"p_need": p, "n_hat": k, "full_above": model.full_above},
                         index=pd.Index(data.query_ids, name="query_id"))
    curve = sweep(f"predicted:{Path(path).name}", preds, data, pricing, model.reactive)
    if model.meta.get("train_hash") == _data_hash(data):
        curve.name += " (IN-SAMPLE: trained on this grid; use `predictor cv`)"
    return curve


def cross_validated_curve(grid: Path, rows: pd.DataFrame, lt: pd.DataFrame, pricing: Pricing,
                          folds: int = 5, seed: int = 0, stage2: str = "auto") -> Curve:
    """``replay --policy predicted:cv``: the two-stage predictor (default options, proactive features),
    k folds by query, each query decided by a model that never saw it; both knobs swept. ``stage2``:
    "auto" (chosen by inner CV within each training fold), "huber" or "classes"."""
    from ..research.grid import load_llm_answers

    data = grid_data(rows, lt, load_llm_answers(grid))
    suffix = "" if stage2 == "auto" else f"-{stage2}"
    return sweep(f"predicted:cv{folds}{suffix}", cross_validate(data, TrainOptions(stage2=stage2), folds, seed),
                 data, pricing, False)


def _data_hash(data: GridData) -> str:
    import numpy as np

    from .model import data_hash

    keep = training_indices(data, np.arange(len(data.texts)))  # what fit() trains on
    return data_hash([data.texts[j] for j in keep], [data.n_star[j] for j in keep])


def transfer(train_grid: Path, test_grid: Path, options: TrainOptions, pricing: Pricing) -> Curve:
    """The paper's transfer setting: fit on one task's grid, sweep on another's."""
    import pandas as pd

    src, dst = load_grid_data(train_grid, pricing), load_grid_data(test_grid, pricing)
    model = fit(src, options)
    p, k = predict(model, dst)
    preds = pd.DataFrame({"p_need": p, "n_hat": k, "full_above": model.full_above},
                         index=pd.Index(dst.query_ids, name="query_id"))
    return sweep(f"transfer:{Path(train_grid).name}->{Path(test_grid).name}", preds, dst, pricing,
                 options.reactive)


def decision_overhead_ms(model: HintPredictor, texts: list[str], reactive: np.ndarray | None = None,
                         repeats: int = 3) -> float:
    """Wall milliseconds per query of featurising + both stages, one query at a time (as live)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i, t in enumerate(texts):
            r = reactive[i : i + 1] if reactive is not None else None
            model.decide(model.features([t], r))
        best = min(best, (time.perf_counter() - t0) * 1000 / max(len(texts), 1))
    return best


__all__ = ["FULL", "GridData", "cross_validate", "cross_validated_curve", "decision_overhead_ms", "fit", "grid_data", "grid_labels",
           "load_grid_data", "predict", "predicted_curve", "sweep", "transfer"]
