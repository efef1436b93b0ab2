"""The two-stage predictor on a synthetic grid with a known answer: a hint is needed iff the query
contains the marker word, and then n* grows with the query's length."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from shepherd_bench.predictor import load_policy
from shepherd_bench.predictor.evaluate import (
    cross_validate,
    decision_overhead_ms,
    fit,
    load_grid_data,
    predict,
    sweep,
)
from shepherd_bench.predictor.model import FULL, HintPredictor, TrainOptions
from shepherd_bench.prices import Price
from shepherd_bench.research.replay import Pricing, open_replay, run_policies
from shepherd_bench.strategies.base import Query
from shepherd_bench.tasks.base import chat

WORDS = ["apple", "river", "stone", "cloud", "seven", "table", "green", "music", "paper", "light", "north", "quiet"]
LEVELS = (0, 4, 8, 16, 32, 64)
N_FULL = 80
PRICING = Pricing(Price("llm", 1.0, 1.0, 4.0), Price("free", 0.0, 0.0, 0.0))


def make_query(rng: random.Random, marker: bool) -> tuple[str, int]:
    n = rng.randint(3, 28)
    words = [rng.choice(WORDS) for _ in range(n)]
    if marker:
        words.insert(rng.randrange(n), "zebra")
    need = 2 * n if marker else 0  # tokens of hint needed
    return " ".join(words), need


def write_synthetic_grid(root: Path, n: int = 160, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    need: dict[str, int] = {}
    llm, rows = [], []
    for i in range(n):
        text, k = make_query(rng, marker=rng.random() < 0.3)  # positives are the minority
        qid = f"s/{i}"
        need[qid] = k
        llm.append({"query_id": qid, "prompt": text, "text": "x", "tokens": ["x"] * N_FULL,
                    "input_tokens": 50, "output_tokens": N_FULL})
        for level in (*LEVELS, N_FULL):
            full = level == N_FULL
            for s in range(3 if level == 0 else 1):
                ok = full or level >= k
                rows.append({"query_id": qid, "level": float(level), "hint_tokens": level, "full": full,
                             "sample": s, "correct": ok, "status": "pass" if ok else "fail",
                             "extracted": "1" if ok else str(s), "text": "a", "llm_input_tokens": 50,
                             "llm_output_tokens": N_FULL, "slm_input_tokens": 0 if full else 40,
                             "slm_output_tokens": 0 if full else (10 if ok else 30),
                             "slm_mean_logprob": -0.1 if ok else -1.0})
    (root / "llm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in llm))
    (root / "grid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "manifest.json").write_text(json.dumps({"task": "synthetic", "spec": {"kind": "tokens"}}))
    return need


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("syn") / "grid"
    return root, write_synthetic_grid(root)


def test_labels_follow_the_oracle(grid: tuple[Path, dict[str, int]]) -> None:
    root, need = grid
    data = load_grid_data(root, PRICING)
    expect = {q: min(x for x in LEVELS if x >= k) if k <= max(LEVELS) else N_FULL for q, k in need.items()}
    assert dict(zip(data.query_ids, data.n_star, strict=True)) == expect
    assert data.reactive is not None and data.reactive.shape == (len(need), 5)


def test_kfold_recovers_marker_and_length(grid: tuple[Path, dict[str, int]]) -> None:
    root, need = grid
    data = load_grid_data(root, PRICING)
    oof = cross_validate(data, TrainOptions(featurizer="hashed-tfidf"), folds=5)
    truth = np.array([need[q] > 0 for q in oof.index])
    assert ((oof["p_need"] >= 0.5).to_numpy() == truth).mean() >= 0.95
    pos = oof[truth]
    corr = np.corrcoef(np.log1p(pos["n_hat"]), np.log1p(pos["n_star"]))[0, 1]
    assert corr >= 0.8
    curve = sweep("cv", oof, data, PRICING, reactive=False)
    accs = [p.summary()["accuracy"] for p in curve.points]
    assert accs[0] == pytest.approx(np.mean(truth == 0)) and accs[-1] >= 0.95
    # some threshold nearly matches the oracle's accuracy at well under LLM-only cost
    llm_cost = (50 * 1.0 + N_FULL * 4.0) / 1e6
    assert any(p.summary()["accuracy"] >= 0.95 and p.summary()["cost_per_query"] < 0.5 * llm_cost
               for p in curve.points)


def test_save_load_policy_and_replay(grid: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    root, need = grid
    data = load_grid_data(root, PRICING)
    model = fit(data, TrainOptions(featurizer="hashed-tfidf"))
    path = model.save(tmp_path / "model")
    assert not any(p.suffix in (".pkl", ".joblib") for p in path.iterdir())
    again = HintPredictor.load(path)
    p1, k1 = predict(model, data)
    p2, k2 = predict(again, data)
    assert np.allclose(p1, p2) and np.allclose(k1, k2)
    assert again.meta["featurizer_used"] == "hashed-tfidf" and len(again.meta["train_hash"]) == 16
    policy = load_policy(path)
    q_yes = Query(id="a", messages=chat("s", "zebra " + " ".join(["apple"] * 20)), max_tokens=100)
    q_no = Query(id="b", messages=chat("s", "apple river stone"), max_tokens=100)
    k = policy.hint_for(q_yes)
    assert k == "full" or 20 <= int(k) <= 80
    assert policy.hint_for(q_no) == 0
    assert policy.explain(q_no)["hint_source"] == "predictor"
    rp = run_policies(open_replay(root, llm_price="gpt-4o", slm_price="free"), [f"predicted:{path}"])
    assert "IN-SAMPLE" in rp.curves[0].name
    assert decision_overhead_ms(model, data.texts[:10]) < 100


def test_reactive_features_and_full_conversion(grid: tuple[Path, dict[str, int]]) -> None:
    root, need = grid
    data = load_grid_data(root, PRICING)
    oof = cross_validate(data, TrainOptions(featurizer="hashed-tfidf", reactive=True), folds=4)
    truth = np.array([need[q] > 0 for q in oof.index])
    assert ((oof["p_need"] >= 0.5).to_numpy() == truth).mean() >= 0.95
    curve = sweep("cv-r", oof, data, PRICING, reactive=True)
    assert curve.points[0].summary()["slm_tokens_per_query"] > 3 * 40  # three samples paid
    model = fit(data, TrainOptions(featurizer="hashed-tfidf"))
    model.full_above = 1.0
    x = model.features(["zebra apple apple apple"])
    assert int(model.decide(x)[0]) == FULL


def test_curve_spans_slm_only_to_llm_only_when_stage_two_collapses(grid: tuple[Path, dict[str, int]]) -> None:
    """Stage 2 predicts 1 token for every query (the collapse seen on real grids): the hint-threshold
    knob alone tops out at "everyone gets 1 token"; with the full-answer knob the curve still ends at
    LLM-only, so 95% of LLM-only accuracy is reachable, and its points replay as labelled."""
    import pandas as pd

    from shepherd_bench.analysis.matched import cost_at_accuracy
    from shepherd_bench.research.replay import level_table, llm_rows, slm_rows

    root, need = grid
    data = load_grid_data(root, PRICING)
    rng = np.random.default_rng(0)
    truth = np.array([need[q] > 0 for q in data.query_ids], dtype=float)
    p = np.clip(0.7 * truth + 0.3 * rng.random(len(truth)), 0, 1)
    preds = pd.DataFrame({"p_need": p, "n_hat": 1.0, "full_above": 0.9 * N_FULL},
                         index=pd.Index(data.query_ids, name="query_id"))
    curve = sweep("collapsed", preds, data, PRICING, reactive=False)
    lt = level_table(data.rows, PRICING)
    slm, llm = slm_rows(lt), llm_rows(lt)
    first, last = curve.points[0].summary(), curve.points[-1].summary()
    assert curve.labels[0].startswith("p>=1.01") and curve.labels[-1] == "p>=0 full>=0"
    assert first["accuracy"] == pytest.approx(slm["acc"].mean()) and first["cost_per_query"] == 0
    assert last["accuracy"] == pytest.approx(llm["acc"].mean())
    assert last["cost_per_query"] == pytest.approx(llm["cost"].mean())
    correct, per_query = curve.arrays()
    acc, cost = correct.mean(axis=0), per_query.mean(axis=0)
    target = 0.95 * float(llm["acc"].mean())
    assert cost_at_accuracy(acc, cost, target) is not None
    one_knob = [pt.summary()["accuracy"] for pt, lab in zip(curve.points, curve.labels, strict=True)
                if "full" not in lab]
    assert max(one_knob) < target  # the first knob alone cannot get there
    # costs never fall as the curve climbs (a frontier), and accuracy rises
    assert list(cost) == sorted(cost) and list(acc) == sorted(acc)


def test_live_policy_takes_both_knobs(grid: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    from shepherd_bench.strategies.shepherd import Shepherd

    root, _ = grid
    path = fit(load_grid_data(root, PRICING), TrainOptions(featurizer="hashed-tfidf")).save(tmp_path / "m")
    q = Query(id="a", messages=chat("s", "apple river stone"), max_tokens=100)
    assert load_policy(path).hint_for(q) == 0
    assert load_policy(path, 0.0, 0.0).hint_for(q) == "full"  # LLM-only end of the curve
    s = Shepherd(policy="predicted", predictor=str(path), threshold="0", full_threshold="0")
    pol = s._policy()
    assert pol.hint_for(q) == "full" and pol.explain(q)["full_threshold"] == 0.0


def test_never_solved_queries_are_labelled_apart_and_left_out_of_training(tmp_path: Path) -> None:
    """Queries no level solves (not even the full answer) must not teach stage 1 that 'no hint is needed'."""
    import pandas as pd

    root = tmp_path / "g"
    write_synthetic_grid(root, n=60, seed=1)
    rows = [json.loads(line) for line in (root / "grid.jsonl").read_text().splitlines()]
    dead = {f"s/{i}" for i in range(0, 60, 6)}  # 10 queries nothing solves
    for r in rows:
        if r["query_id"] in dead:
            r.update(correct=False, status="fail")
    (root / "grid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_grid_data(root, PRICING)
    solved = pd.Series(data.solved, index=data.query_ids)
    assert set(solved[~solved].index) == dead
    n_star = pd.Series(data.n_star, index=data.query_ids)
    assert (n_star[list(dead)] == 0).all()  # n* stays 0 for display; the label that matters is "unsolved"
    model = fit(data, TrainOptions(featurizer="hashed-tfidf"))
    assert model.meta["n_train"] == 50 and model.meta["unsolved_left_out"] == 10
    # the in-sample guard still recognises the grid it was trained on
    path = model.save(tmp_path / "m")
    rp = run_policies(open_replay(root, llm_price="gpt-4o", slm_price="free"), [f"predicted:{path}"])
    assert "IN-SAMPLE" in rp.curves[0].name


def _three_kinds(n: int = 90, seed: int = 5) -> tuple[list[str], list[int], list[int], list[str]]:
    """'alpha' queries need a 16-token hint, 'beta' ones only the full 80-token answer, the rest none."""
    rng = random.Random(seed)
    texts, n_star, kinds = [], [], []
    for i in range(n):
        kind = ("alpha", "beta", "none")[i % 3]
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        if kind != "none":
            words.insert(rng.randrange(len(words)), kind)
        texts.append(" ".join(words))
        n_star.append({"alpha": 16, "beta": N_FULL, "none": 0}[kind])
        kinds.append(kind)
    return texts, n_star, [N_FULL] * n, kinds


@pytest.mark.parametrize("stage2", ["huber", "classes"])
def test_both_stage_two_variants_recover_a_known_answer(stage2: str, tmp_path: Path) -> None:
    from shepherd_bench.predictor.model import train

    texts, n_star, lengths, kinds = _three_kinds()
    model = train(texts, n_star, lengths, TrainOptions(featurizer="hashed-tfidf", stage2=stage2))
    assert model.meta["stage2"] == stage2
    probe = ["alpha apple river stone", "beta apple river stone", "apple river stone"]
    k = model.decide(model.features(probe))
    assert k[1] == FULL and k[2] == 0  # "full" is reachable: the full-only queries get the full answer
    assert (k[0] == 16) if stage2 == "classes" else (8 <= k[0] <= 32)
    again = HintPredictor.load(model.save(tmp_path / stage2))
    assert list(again.decide(again.features(probe))) == list(k)


def test_auto_stage_two_chooses_by_inner_cross_validation() -> None:
    from shepherd_bench.predictor.model import hint_loss, train

    texts, n_star, lengths, _ = _three_kinds()
    model = train(texts, n_star, lengths, TrainOptions(featurizer="hashed-tfidf", stage2="auto"))
    losses = model.meta["stage2_cv_loss"]
    assert set(losses) == {"huber", "classes"}
    assert model.meta["stage2"] == min(losses, key=lambda v: (losses[v], v != "huber"))
    # the loss itself: sufficient hints pay their tokens; short ones pay them plus the whole answer
    full = 1e9
    assert hint_loss(np.array([16.0, 8.0, full]), np.array([16.0, 16.0, full]), np.array([80.0] * 3)) \
        == pytest.approx((16 + (8 + 80) + 80) / 3)
