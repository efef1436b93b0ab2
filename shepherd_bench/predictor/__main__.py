"""``python -m shepherd_bench.predictor train|cv|transfer``: fit, cross-validate or transfer the predictor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model import TrainOptions


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m shepherd_bench.predictor")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, helptext in (("train", "fit on a grid and save"), ("cv", "k-fold by query on a grid"),
                           ("transfer", "fit on --grid, evaluate on --test-grid")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--grid", type=Path, required=True)
        p.add_argument("--featurizer", default="hashed-tfidf", choices=["auto", "hashed-tfidf", "minilm"],
                       help="query features: hashed TF-IDF n-grams + text statistics (default, < 1 ms per "
                       "decision), all-MiniLM-L6-v2 embeddings, or auto (MiniLM when it loads here)")
        p.add_argument("--reactive", action="store_true", help="add the SLM's first samples' features")
        p.add_argument("--threshold", type=float, default=0.5)
        p.add_argument("--joint-lambda", type=float, default=None, metavar="λ",
                       help="train both stages jointly on a shared layer: λ * BCE + (1 - λ) * Huber")
        p.add_argument("--stage2", default="auto", choices=["auto", "huber", "classes"],
                       help="stage 2: Huber regression of log(1 + n*), classes over the grid's levels with "
                       "'full' as its own class, or whichever has the lower inner-CV hint loss")
        p.add_argument("--llm-price", default="embedded-llm")
        p.add_argument("--slm-price", default="embedded-slm")
        p.add_argument("--prices", type=Path)
        p.add_argument("--target", default="llm")
        p.add_argument("--folds", type=int, default=5)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", type=Path, help="train: model folder; cv/transfer: report file")
        p.add_argument("--test-grid", type=Path)
    return ap


def main(argv: list[str] | None = None) -> int:
    from ..prices import load_prices
    from ..research.replay import Pricing, matched_rows, md_table, open_replay
    from .evaluate import cross_validate, decision_overhead_ms, fit, load_grid_data, sweep, transfer

    a = build_parser().parse_args(argv)
    table = load_prices(a.prices)
    pricing = Pricing(table.get(a.llm_price), table.get(a.slm_price))
    opts = TrainOptions(featurizer=a.featurizer, reactive=a.reactive, threshold=a.threshold,
                        joint_lambda=a.joint_lambda, seed=a.seed, stage2=a.stage2)
    if a.command == "train":
        data = load_grid_data(a.grid, pricing)
        model = fit(data, opts)
        model.meta["grid"] = str(a.grid)
        model.meta["decision_ms_per_query"] = decision_overhead_ms(model, data.texts[:50], None if not a.reactive
                                                                   else data.reactive)
        out = model.save(a.out or Path("predictor"))
        print(json.dumps({"saved": str(out), **model.meta}, indent=2, sort_keys=True, default=str))
        return 0
    if a.command == "cv":
        data = load_grid_data(a.grid, pricing)
        name = f"cv{a.folds}{'-reactive' if a.reactive else ''}{'' if a.joint_lambda is None else f'-joint{a.joint_lambda:g}'}{'' if a.stage2 == 'auto' else f'-{a.stage2}'}"
        curve = sweep(name, cross_validate(data, opts, a.folds, a.seed),
                      data, pricing, a.reactive)
    else:
        if a.test_grid is None:
            print("error: transfer needs --test-grid", file=sys.stderr)
            return 2
        curve = transfer(a.grid, a.test_grid, opts, pricing)
    rp = open_replay(a.test_grid if a.command == "transfer" else a.grid, a.prices, a.llm_price, a.slm_price)
    rp.curves.append(curve)
    rows = [[lab, p.summary()["accuracy"], 1000 * p.summary()["cost_per_query"], p.summary()["llm_share"]]
            for lab, p in zip(curve.labels, curve.points, strict=True)]
    text = "\n".join([f"## {curve.name}", "", md_table(["threshold", "accuracy", "$ per 1k q", "LLM share"], rows),
                      "", json.dumps(matched_rows(rp, a.target, 1000, a.seed), indent=2, default=str)])
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
