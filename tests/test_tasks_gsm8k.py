"""GSM8K: prompts, and the gold-answer cross-check over all 1,319 worked solutions."""

from __future__ import annotations

from pathlib import Path

from shepherd_bench.tasks import get_task
from shepherd_bench.tasks.math_answers import extract_answer, parse_number


def test_query_settings(data_dir: Path) -> None:
    task = get_task("gsm8k")
    doc = task.load(data_dir).docs[0]
    q = task.query(doc)
    user = q.messages[-1].content
    assert q.max_tokens >= 512
    # question first, then reasoning before a boxed final answer (an answer-first prompt made the SLM
    # write its final line before any reasoning)
    question, instruction = user.rsplit("\n\n", 1)
    assert question.startswith("Janet") and doc.record["gold"] not in question
    assert instruction == "Please reason step by step, and put your final answer within \\boxed{}."


def test_all_gold_answers_extract_and_match(data_dir: Path) -> None:
    task = get_task("gsm8k")
    docs = task.load(data_dir).docs
    assert len(docs) == 1319
    golds = [str(d.record["gold"]) for d in docs]
    assert all(parse_number(g) is not None for g in golds)
    solutions = [str(d.record["solution"]) for d in docs]
    assert [extract_answer(s) for s in solutions] == golds
    assert all(s.correct for s in task.score(docs, solutions))
    boxed = [s.rsplit("####", 1)[0] + f"So the answer is \\boxed{{{g}}}." for s, g in zip(solutions, golds, strict=True)]
    assert all(s.correct for s in task.score(docs, boxed))


def test_wrong_answers_fail(data_dir: Path) -> None:
    task = get_task("gsm8k")
    docs = task.load(data_dir).docs[:50]
    wrong = [f"#### {parse_number(str(d.record['gold'])) + 1}" for d in docs]  # type: ignore[operator]
    scores = task.score(docs, wrong)
    assert not any(s.correct for s in scores) and all(s.status == "fail" for s in scores)
    assert task.score(docs[:1], ["no idea"])[0].status == "no_answer"
