"""Cascades: SLM first, the LLM's full answer where the deferral score is below the threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baselines.labels import SplitOverlap
from shepherd_bench.backends.base import GenRequest, GenResult, Message
from shepherd_bench.errors import UserError
from shepherd_bench.strategies import make_strategy
from shepherd_bench.strategies.base import Query
from tests.scripted import count, failed, pair

LLM = "the llm answer #### 9"


def query(i: int, text: str = "") -> Query:
    return Query(f"q{i}", (Message("system", "You are a careful math solver."), Message("user", text or f"problem {i}")), 50)


def run(name: str, params: dict[str, str], queries: list[Query], small: Any, **kw: Any) -> tuple[list[Any], Any, Any]:
    models, s, lg = pair(small, lambda r: LLM, **kw)
    return make_strategy(name, params).solve(queries, models), s, lg


def confident_on_q0(r: GenRequest) -> float:
    return -0.1 if "problem 0" in r.messages[-1].content else -2.0


def test_logprob_cascade_defers_low_confidence_answers() -> None:
    qs = [query(0), query(1)]
    (a0, a1), small, large = run("cascade-logprob", {"threshold": "-0.5"}, qs, lambda r: "slm #### 1 2 3",
                                 logprob=confident_on_q0)
    assert all(r.logprobs for r in small.requests) and len(small.batches) == 1
    assert [r.messages[-1].content for r in large.requests] == ["problem 1"]
    assert a0.answer == "slm #### 1 2 3" and a0.decision == {"deferred": False, "score": -0.1, "threshold": -0.5}
    assert a1.answer == LLM and a1.decision == {"deferred": True, "score": -2.0, "threshold": -0.5}
    assert [(c.role, c.purpose, c.output_tokens) for c in a1.calls] == [("small", "answer", 5), ("large", "answer", 5)]
    assert a1.calls[1].input_tokens == count("You are a careful math solver.") + count("problem 1")


def test_logprob_cascade_needs_logprobs() -> None:
    with pytest.raises(UserError, match="returned no logprobs"):
        run("cascade-logprob", {}, [query(0)], lambda r: GenResult(text="x", output_tokens=1))


def test_agreement_cascade_keeps_the_majority_or_defers() -> None:
    def small(r: GenRequest) -> str:
        return "#### 5" if "problem 0" in r.messages[-1].content or r.seed < 2 else "#### 6"

    def split_vote(r: GenRequest) -> str:
        return "#### 5" if "problem 0" in r.messages[-1].content else f"#### {r.seed}"

    (a0, a1), s, lg = run("cascade-agreement", {"samples": "3", "threshold": "0.6"}, [query(0), query(1)], small)
    assert len(s.requests) == 6 and {r.seed for r in s.requests} == {0, 1, 2} and lg.requests == []
    assert a0.decision["score"] == 1.0 and a1.decision["score"] == pytest.approx(0.666667)
    assert a0.answer == "#### 5" and a1.answer == "#### 5" and [c.purpose for c in a1.calls] == ["sample"] * 3

    (b0, b1), _, lg = run("cascade-agreement", {"samples": "3", "threshold": "0.6"}, [query(0), query(1)], split_vote)
    assert b1.decision["deferred"] and b1.answer == LLM and [r.messages[-1].content for r in lg.requests] == ["problem 1"]
    assert [c.role for c in b1.calls] == ["small"] * 3 + ["large"]


def test_a_failed_slm_call_is_an_error_and_is_not_deferred() -> None:
    (a,), _, lg = run("cascade-agreement", {"samples": "2"}, [query(0)], lambda r: failed("oom") if r.seed else "#### 1")
    assert a.error == "small sample call failed: oom" and a.answer == "" and lg.requests == []
    (b,), _, _ = run("cascade-logprob", {"threshold": "0"}, [query(0)], lambda r: "x")
    assert b.decision["deferred"] is True


def frugal_labels(path: Path) -> Path:
    rows = []
    for i in range(40):
        good = i % 2 == 0
        rows.append({"query_id": f"t{i}", "text": f"problem about trains {i}", "slm_correct": good,
                     "llm_correct": True, "slm_answer": "so the answer is #### 12" if good else "i am not sure"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_frugal_scorer_defers_answers_that_look_wrong(tmp_path: Path) -> None:
    labels = str(frugal_labels(tmp_path / "l.jsonl"))

    def small(r: GenRequest) -> str:
        return "so the answer is #### 12" if "problem 0" in r.messages[-1].content else "i am not sure"

    (a0, a1), _, lg = run("cascade-frugal", {"labels": labels, "threshold": "0.5", "C": "10"}, [query(0), query(1)], small)
    assert not a0.decision["deferred"] and a1.decision["deferred"] and len(lg.requests) == 1
    assert a0.decision["score"] > 0.5 > a1.decision["score"]


def test_frugal_refuses_training_queries_and_calibrates(tmp_path: Path) -> None:
    labels = str(frugal_labels(tmp_path / "l.jsonl"))
    models, small, _ = pair(lambda r: "x", lambda r: LLM)
    with pytest.raises(SplitOverlap):
        make_strategy("cascade-frugal", {"labels": labels, "calib_fraction": "0"}).solve([Query("t3", (), 5)], models)
    assert small.requests == []
    strat: Any = make_strategy("cascade-frugal", {"labels": labels, "llm_fraction": "0.5", "calib_fraction": "0.3"})
    t = strat.threshold(models)
    scorer, splits = strat.scorer(models)
    calib = splits.calib
    held = scorer.score([r.text for r in calib], [r.slm_answer for r in calib])
    target = round(0.5 * len(calib))
    deferred = held[held < t]
    assert len(calib) > 4 and len(deferred) >= target  # ties at the cut may defer a few more, never fewer
    assert int((held < deferred.max()).sum()) < target
