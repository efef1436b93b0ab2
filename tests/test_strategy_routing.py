"""Routers: score + threshold split, seeded random routing, learned routers, calibration, split hygiene."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from baselines.labels import SplitOverlap, load_labels, split_rows
from baselines.routing import calibrate_threshold
from shepherd_bench.backends.base import Message
from shepherd_bench.errors import UserError
from shepherd_bench.strategies import make_strategy
from shepherd_bench.strategies.base import Query
from tests.scripted import count, pair

HARD = "prove the inequality for every prime modulus using induction on the exponent"
EASY = "add the two apples and the three pears together"


def query(qid: str, text: str) -> Query:
    return Query(qid, (Message("system", "You are a careful math solver."), Message("user", text)), 64)


def run(name: str, params: dict[str, str], queries: list[Query], seed: int = 0) -> tuple[list[Any], Any, Any]:
    models, small, large = pair(lambda r: "slm says 1", lambda r: "llm says 2", seed=seed)
    return make_strategy(name, params).solve(queries, models), small, large


def test_calibrate_threshold_hits_the_target_fraction() -> None:
    scores = np.linspace(0.1, 1.0, 10)
    for f, n in [(0.0, 0), (0.3, 3), (0.5, 5), (1.0, 10)]:
        t = calibrate_threshold(scores, f)
        assert int((scores >= t).sum()) == n
    with pytest.raises(UserError):
        calibrate_threshold(np.array([]), 0.3)


def test_route_random_is_seeded_and_batch_independent() -> None:
    qs = [query(f"q{i}", f"question {i}") for i in range(40)]
    a, small, large = run("route-random", {"threshold": "0.5"}, qs)
    b, _, _ = run("route-random", {"threshold": "0.5"}, qs[20:] + qs[:20])
    assert {x.query_id: x.decision for x in a} == {x.query_id: x.decision for x in b}
    c, _, _ = run("route-random", {"threshold": "0.5"}, qs, seed=1)
    assert [x.decision["score"] for x in a] != [x.decision["score"] for x in c]
    assert len(small.batches) == 1 and len(large.batches) == 1  # one call per model for the batch
    for x, q in zip(a, qs, strict=True):
        big = x.decision["score"] >= 0.5
        assert x.decision["routed"] == ("large" if big else "small") and x.decision["threshold"] == 0.5
        (call,) = x.calls
        assert call.role == x.decision["routed"] and call.purpose == "answer"
        assert call.input_tokens == count(q.messages[0].content) + count(q.messages[1].content)
        assert x.answer == ("llm says 2" if big else "slm says 1")
    assert len(large.requests) == sum(x.decision["routed"] == "large" for x in a)


def test_route_random_llm_fraction_sets_the_threshold() -> None:
    qs = [query(f"q{i}", "x") for i in range(400)]
    attempts, _, large = run("route-random", {"llm_fraction": "0.3"}, qs)
    assert attempts[0].decision["threshold"] == pytest.approx(0.7)
    assert 0.22 < len(large.requests) / 400 < 0.38


def write_labels(path: Path, n: int = 40, split: bool = False) -> Path:
    rows = []
    for i in range(n):
        hard = i % 2 == 0
        row = {"query_id": f"train{i}", "text": f"{HARD if hard else EASY} variant {i}",
               "slm_correct": not hard, "llm_correct": True}
        if split:
            row["split"] = "calib" if i >= n - 10 else "train"
        rows.append(row)
    rows.append({"query_id": "held", "text": EASY, "slm_correct": True, "llm_correct": True, "split": "test"} if split
                else {"query_id": "train-extra", "text": EASY, "slm_correct": True, "llm_correct": True})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["route-knn", "route-logistic"])
def test_learned_router_sends_hard_queries_to_the_llm(tmp_path: Path, name: str) -> None:
    labels = write_labels(tmp_path / "labels.jsonl")
    qs = [query("e0", HARD + " again"), query("e1", EASY + " again")]
    attempts, _, _ = run(name, {"labels": str(labels), "threshold": "0.5", "k": "5"} if name == "route-knn"
                         else {"labels": str(labels), "threshold": "0.5", "C": "10"}, qs)
    assert [a.decision["routed"] for a in attempts] == ["large", "small"]
    assert attempts[0].decision["score"] > attempts[1].decision["score"]
    assert make_strategy(name, {"labels": str(labels)}).describe()["featurizer"] in {"tfidf", "minilm"}


def test_learned_router_refuses_evaluation_queries_it_was_trained_on(tmp_path: Path) -> None:
    labels = write_labels(tmp_path / "labels.jsonl")
    models, small, large = pair(lambda r: "a", lambda r: "b")
    strat = make_strategy("route-knn", {"labels": str(labels)})
    with pytest.raises(SplitOverlap, match="train4"):
        strat.solve([query("e0", "new"), query("train4", HARD)], models)
    assert small.requests == [] and large.requests == []  # refused before any call


def test_split_field_and_calibration_on_held_out_rows(tmp_path: Path) -> None:
    labels = write_labels(tmp_path / "labels.jsonl", split=True)
    splits = split_rows(load_labels(labels), 0.2, 0)
    assert len(splits.train) == 30 and len(splits.calib) == 10 and "held" not in splits.ids()
    qs = [query("held", EASY)]  # a "test" row is not used, so it may be evaluated
    attempts, _, _ = run("route-logistic", {"labels": str(labels), "llm_fraction": "0.5"}, qs)
    strat: Any = make_strategy("route-logistic", {"labels": str(labels), "llm_fraction": "0.5"})
    models, _, _ = pair(lambda r: "a", lambda r: "b")
    held_out = strat.calibration_scores(models)
    t = strat.threshold(models)
    assert held_out.shape == (10,) and int((held_out >= t).sum()) == 5
    assert attempts[0].decision["threshold"] == pytest.approx(t)


def test_hashed_split_without_split_field_is_seeded(tmp_path: Path) -> None:
    rows = load_labels(write_labels(tmp_path / "labels.jsonl", n=200))
    a, b = split_rows(rows, 0.2, 0), split_rows(rows, 0.2, 0)
    assert a == b and 20 < len(a.calib) < 60 and not (set(r.query_id for r in a.train) & set(r.query_id for r in a.calib))


def test_labels_file_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_labels(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query_id": "a", "text": "t"}) + "\n")
    with pytest.raises(UserError, match="lacks slm_correct, llm_correct"):
        load_labels(bad)
