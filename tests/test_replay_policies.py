"""Replay policies on a hand-made grid with known answers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shepherd_bench.prices import Price
from shepherd_bench.research.replay import (
    FULL,
    Pricing,
    ReplayError,
    cmd_replay,
    hint_distribution,
    level_table,
    open_replay,
    run_policies,
    single_policy,
    token_rows,
)

PRICING = Pricing(Price("llm", 1.0, 1.0, 2.0), Price("free", 0.0, 0.0, 0.0))
N, INPUT = 10, 100
# correctness per level 0 / 0.5 / 1.0 (full LLM answer, hint = 10 tokens)
TRUTH = {"qA": (1, 1, 1), "qB": (0, 1, 1), "qC": (0, 0, 1), "qD": (0, 0, 0)}
LOGPROB = {"qA": -0.1, "qB": -0.9, "qC": -1.5, "qD": -2.0}


def rows(early_stop: bool = False) -> list[dict[str, Any]]:
    out = []
    for q, cs in TRUTH.items():
        for level, k, c in zip((0.0, 0.5, 1.0), (0, 5, N), cs, strict=True):
            full = level == 1.0
            out.append({"query_id": q, "level": level, "hint_tokens": k, "full": full, "sample": 0, "seed": 0,
                        "correct": bool(c), "status": "pass" if c else "fail", "extracted": None, "text": "x",
                        "llm_input_tokens": INPUT, "llm_output_tokens": N,
                        "slm_input_tokens": 0 if full else 50 + k, "slm_output_tokens": 0 if full else 20,
                        "slm_mean_logprob": LOGPROB[q] if level == 0 else None})
            if early_stop and c:
                break
    return out


def write_grid(root: Path, early_stop: bool = False) -> Path:
    root.mkdir(parents=True)
    (root / "grid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(early_stop)))
    manifest = {"task": "hand", "spec": {"early_stop": early_stop}, "llm": {"price": "gpt-4o"},
                "slm": {"price": "free"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture()
def lt() -> pd.DataFrame:
    return level_table(pd.DataFrame(rows()), PRICING)


def cost(k: int, full: bool = False) -> float:
    return 0.0 if k == 0 and not full else (INPUT * 1.0 + k * 2.0) / 1e6


def test_oracle_picks_smallest_successful_level(lt: pd.DataFrame) -> None:
    o = single_policy("oracle", pd.DataFrame(rows()), lt).outcome.set_index("query_id")
    assert o["hint_tokens"].to_dict() == {"qA": 0, "qB": 5, "qC": 10, "qD": 0}
    assert o["acc"].to_dict() == {"qA": 1.0, "qB": 1.0, "qC": 1.0, "qD": 0.0}
    assert o["cost"].sum() == pytest.approx(cost(5) + cost(N))


def test_oracle_cascade_pays_llm_wherever_slm_failed(lt: pd.DataFrame) -> None:
    r = single_policy("oracle-cascade", pd.DataFrame(rows()), lt)
    o = r.outcome.set_index("query_id")
    assert o["acc"].to_dict() == {"qA": 1.0, "qB": 1.0, "qC": 1.0, "qD": 0.0}
    assert o["cost"].sum() == pytest.approx(3 * cost(N))
    assert o["slm_tokens"].to_dict() == {q: 70.0 for q in TRUTH}  # the SLM ran on every query
    route = single_policy("oracle-route", pd.DataFrame(rows()), lt).outcome.set_index("query_id")
    assert route["cost"].sum() == pytest.approx(3 * cost(N))
    assert route.loc["qA", "slm_tokens"] == 70 and route.loc["qB", "slm_tokens"] == 0  # never both


def test_fixed_fraction_tokens_slm_llm(lt: pd.DataFrame) -> None:
    df = pd.DataFrame(rows())
    f = single_policy("fixed:0.5", df, lt).summary()
    assert f["accuracy"] == 0.5 and f["cost_per_query"] == pytest.approx(cost(5))
    t = single_policy("tokens:3", df, lt).outcome  # rounded up to the 5-token level
    assert (t["hint_tokens"] == 5).all()
    t = single_policy("tokens:7", df, lt).outcome  # past the last partial level: the full answer
    assert t["full"].all()
    assert single_policy("slm", df, lt).summary()["accuracy"] == 0.25
    llm = single_policy("llm", df, lt).summary()
    assert llm["accuracy"] == 0.75 and llm["cost_per_query"] == pytest.approx(cost(N))
    with pytest.raises(ReplayError, match="not on this grid"):
        single_policy("fixed:0.3", df, lt)


def test_per_query_token_decisions(lt: pd.DataFrame) -> None:
    hints = pd.Series({"qA": 0, "qB": 4, "qC": FULL, "qD": 0})
    o = token_rows(lt, hints).set_index("query_id")
    assert o["hint_tokens"].to_dict() == {"qA": 0, "qB": 5, "qC": 10, "qD": 0}
    assert o["acc"].mean() == 0.75


def test_hint_distribution(lt: pd.DataFrame) -> None:
    h = hint_distribution(lt)
    assert (h["no_hint"], h["partial_hint"], h["full_answer"], h["unsolved"]) == (0.25, 0.25, 0.25, 0.25)
    assert h["no_hint_among_solved"] == pytest.approx(1 / 3)


def test_majority_of_samples_defines_success() -> None:
    r = rows()
    extra = [dict(x, sample=s, correct=(s == 1)) for x in r if x["query_id"] == "qA" and x["level"] == 0.0
             for s in (1, 2)]
    lt = level_table(pd.DataFrame(r + extra), PRICING)
    a = lt[(lt.query_id == "qA") & (lt.level == 0.0)].iloc[0]
    assert a["acc"] == pytest.approx(2 / 3) and bool(a["success"])


def test_cascade_curve_endpoints_and_report(tmp_path: Path) -> None:
    rp = run_policies(open_replay(write_grid(tmp_path / "g")), ["slm", "cascade:logprob", "fixed-curve"])
    curve = rp.curves[0]
    first, last = curve.points[0].summary(), curve.points[-1].summary()
    assert first["accuracy"] == 0.25 and first["llm_share"] == 0.0  # never escalates
    assert last["accuracy"] == 0.75 and last["llm_share"] == 1.0  # always escalates
    assert [p.name for p in rp.curves[1].points] == ["fixed:0", "fixed:0.5", "fixed:1"]


def test_cli_markdown_and_early_stop_guard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = write_grid(tmp_path / "g")
    args = argparse.Namespace(grid=g, policy=None, format="md", prices=None, llm_price=None, slm_price=None,
                              target="llm", resamples=200, seed=0, out=tmp_path / "r.md")
    assert cmd_replay(args) == 0
    text = capsys.readouterr().out
    assert "Oracle bounds" in text and "shepherding <= cascading: holds" in text
    assert "Cost at matched accuracy" in text
    e = write_grid(tmp_path / "e", early_stop=True)
    rp = open_replay(e)
    assert run_policies(rp, ["oracle"]).singles[0].summary()["accuracy"] == 0.75
    with pytest.raises(ReplayError, match="early-stop"):
        run_policies(open_replay(e), ["fixed:0.5"])


def test_exported_runs_price_like_the_replay(tmp_path: Path) -> None:
    """A replayed policy exported as a run folder loads in the analysis layer with the same accuracy and
    cost per query as the replay itself, and numeric parameters stay numbers (so sweeps are found)."""
    from shepherd_bench.analysis.runs import find_sweeps, load_run
    from shepherd_bench.research.export import export_runs
    from shepherd_bench.research.replay import open_replay, run_policies

    rp = run_policies(open_replay(write_grid(tmp_path / "g")), ["oracle", "llm", "fixed-curve"])
    paths = export_runs(rp, tmp_path / "runs")
    runs = {p.name: load_run(p) for p in paths}
    by_policy = {r.name: r.summary() for r in rp.singles}
    for name, policy in (("oracle", "shepherd-oracle"), ("llm", "llm")):
        run = next(r for r in runs.values() if r.strategy == policy)
        assert run.samples["correct"].mean() == pytest.approx(by_policy[name]["accuracy"])
        assert run.samples["cost_usd"].mean() == pytest.approx(by_policy[name]["cost_per_query"])
    shepherd = [r for r in runs.values() if r.strategy == "shepherd"]
    assert shepherd and all(isinstance(r.params["hint_fraction"], (int, float)) for r in shepherd)
    if len(shepherd) >= 2:
        assert find_sweeps(list(runs.values()))


def write_prompts(root: Path) -> None:
    """llm.jsonl with the user turn of each query: 'easy' words where the SLM succeeds, 'hard' where not."""
    words = {"qA": "easy sum of two numbers", "qB": "hard proof of a lemma", "qC": "hard integral bound",
             "qD": "hard proof of a bound"}
    (root / "llm.jsonl").write_text("".join(json.dumps({"query_id": q, "prompt": t, "text": "x", "tokens": ["x"],
                                                        "output_tokens": N}) + "\n" for q, t in words.items()))


def test_route_random_replays_the_live_seeded_scores(tmp_path: Path) -> None:
    from baselines.labels import _unit

    g = write_grid(tmp_path / "g")
    write_prompts(g)
    rp = run_policies(open_replay(g), ["route:random"])
    curve = rp.curves[0]
    score = {q: _unit(0, q) for q in TRUTH}  # RouteRandom: run seed 0 + its seed parameter 0
    for label, point in zip(curve.labels, curve.points, strict=True):
        t = float(label)
        sent = {q for q, s in score.items() if s >= t}
        out = point.outcome.set_index("query_id")
        assert set(out.index[out["full"]]) == sent
        # routed queries get the full LLM answer, the others the SLM's (level 0) answer
        want = sum(TRUTH[q][2] if q in sent else TRUTH[q][0] for q in TRUTH) / len(TRUTH)
        assert point.summary()["accuracy"] == pytest.approx(want)
    assert curve.points[0].summary()["llm_share"] == 0.0 and curve.points[-1].summary()["llm_share"] == 1.0


def test_route_learned_is_cross_fitted_and_slm_scores_are_refused(tmp_path: Path) -> None:
    g = write_grid(tmp_path / "g")
    write_prompts(g)
    rp = open_replay(g)
    from shepherd_bench.research.replay import routing_labels

    labels = routing_labels(rp.lt, rp.df, g)
    assert [(r["query_id"], r["slm_correct"], r["llm_correct"]) for r in labels] == \
        [(q, bool(c[0]), bool(c[2])) for q, c in TRUTH.items()]
    from baselines.routing import RouteLogistic

    # leave-one-out with 4 queries: each score comes from a model fitted on the other three only, so
    # changing one query's own label must not change its own score
    base = RouteLogistic.replay_scores(labels, folds=4, params={"embedder": "tfidf"})
    flipped = [dict(r, llm_correct=not r["llm_correct"]) if r["query_id"] == "qB" else r for r in labels]
    again = RouteLogistic.replay_scores(flipped, folds=4, params={"embedder": "tfidf"})
    assert again[1] == pytest.approx(base[1]) and not np.allclose(again, base)
    with pytest.raises(ReplayError, match="cascade:logprob"):
        run_policies(open_replay(g), ["route:logprob"])


def test_a_registered_cascade_replays_cross_fitted_from_the_slm_answers(tmp_path: Path) -> None:
    """``cascade:frugal`` is the registered ``cascade-frugal`` through the replay protocol: each query's
    P(SLM correct) comes from a scorer fitted on the other folds only (its own label does not move its
    score), the curve defers where that score is below the threshold, and an unknown name lists the known."""
    from baselines.cascade import CascadeFrugal
    from shepherd_bench.research.replay import routing_labels

    g = write_grid(tmp_path / "g")
    write_prompts(g)
    rp = open_replay(g)
    labels = routing_labels(rp.lt, rp.df, g)
    assert all(r["slm_answer"] for r in labels)
    base = CascadeFrugal.replay_scores(labels, folds=4)
    flipped = [dict(r, slm_correct=not r["slm_correct"]) if r["query_id"] == "qB" else r for r in labels]
    again = CascadeFrugal.replay_scores(flipped, folds=4)
    assert again[1] == pytest.approx(base[1]) and not np.allclose(again, base)
    assert ((0 <= base) & (base <= 1)).all()
    curve = run_policies(open_replay(g), ["cascade:frugal"]).curves[0]
    assert curve.name == "cascade:frugal"
    # the lowest threshold defers nothing (SLM-only accuracy), the highest defers everything (LLM-only)
    first, last = curve.points[0].summary(), curve.points[-1].summary()
    assert first["llm_share"] == 0.0 and last["llm_share"] == 1.0
    assert first["accuracy"] == pytest.approx(np.mean([c[0] for c in TRUTH.values()]))
    assert last["accuracy"] == pytest.approx(np.mean([c[2] for c in TRUTH.values()]))
    with pytest.raises(ReplayError, match="known: .*frugal.*logprob"):
        run_policies(open_replay(g), ["cascade:nope"])


def test_predicted_cv_and_labels_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from baselines.labels import load_labels
    from shepherd_bench.research.export import export_runs

    g = write_grid(tmp_path / "g")
    write_prompts(g)
    rp = run_policies(open_replay(g), ["predicted:cv"])
    curve = rp.curves[0]
    assert curve.name == "predicted:cv5" and len(set(curve.labels)) == len(curve.labels)
    paths = export_runs(rp, tmp_path / "runs")
    assert len(paths) == len(curve.points)  # one folder per point: no two points share a name
    man = json.loads((paths[0] / "manifest.json").read_text())
    assert man["strategy"]["params"]["policy"] == "predicted" and man["strategy"]["params"]["predictor"] == "cv5"
    args = argparse.Namespace(grid=g, policy=["slm"], format="md", prices=None, llm_price=None, slm_price=None,
                              target="llm", resamples=50, seed=0, out=None, export_labels=tmp_path / "l.jsonl")
    assert cmd_replay(args) == 0
    rows = load_labels(tmp_path / "l.jsonl")
    assert {r.query_id: (r.slm_correct, r.llm_correct) for r in rows} == \
        {q: (bool(c[0]), bool(c[2])) for q, c in TRUTH.items()}
    assert rows[0].text == "easy sum of two numbers" and rows[0].slm_answer == "x"


def test_exported_calls_split_slm_input_and_output_as_the_grid_counted_them(tmp_path: Path) -> None:
    """The SLM call of an exported run has the grid's input tokens in and its output tokens out (not the
    sum as output), and a cascade's deferral is recorded in live order: SLM answer, then LLM answer."""
    from shepherd_bench.analysis.runs import load_run
    from shepherd_bench.research.export import export_runs

    rp = run_policies(open_replay(write_grid(tmp_path / "g")), ["slm", "tokens:5", "oracle-cascade"])
    runs = {load_run(p).strategy: p for p in export_runs(rp, tmp_path / "runs")}

    def calls(strategy: str) -> dict[str, list[dict[str, Any]]]:
        recs = [json.loads(line) for line in (runs[strategy] / "samples.jsonl").read_text().splitlines()]
        return {r["query_id"]: r["calls"] for r in recs}

    slm = calls("slm")["qB"]
    assert [(c["role"], c["input_tokens"], c["output_tokens"]) for c in slm] == [("small", 50, 20)]
    hinted = calls("shepherd")["qB"]
    assert [(c["role"], c["purpose"], c["input_tokens"], c["output_tokens"]) for c in hinted] == [
        ("large", "hint", INPUT, 5), ("small", "continue", 55, 20)]
    deferred = calls("cascade-oracle")["qC"]  # the SLM fails qC: the LLM answers after it
    assert [(c["role"], c["input_tokens"], c["output_tokens"]) for c in deferred] == [
        ("small", 50, 20), ("large", INPUT, N)]
    run = load_run(runs["shepherd"])
    assert run.samples.set_index("query_id").loc["qB", "answer_tokens"] == 5 + 20
