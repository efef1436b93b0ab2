"""Code tasks: program extraction, sandbox jobs, scoring, and the reference-solution cross-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from shepherd_bench.sandbox import run_batch
from shepherd_bench.tasks import get_task
from shepherd_bench.tasks.base import Doc
from shepherd_bench.tasks.code import CodeTask, extract_program, fenced_blocks
from shepherd_bench.tasks.humaneval import HumanEval, docstring_examples
from shepherd_bench.tasks.mbpp import UPSTREAM_FAILURES, entry_point

PROMPT = 'from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    """Sum.\n    >>> add([1, 2])\n    3\n    """\n'


def test_fenced_blocks() -> None:
    text = "a\n```python\nx = 1\n```\nb\n```\ny = 2\n```\n```text\nno\n```\n```py\nz = 3"
    assert fenced_blocks(text) == ["x = 1\n", "y = 2\n", "z = 3"]


def test_extract_picks_block_defining_entry_point() -> None:
    answer = (
        "Here:\n```python\ndef helper():\n    return 1\n\ndef add(xs):\n    return sum(xs)\n```\n"
        "Usage:\n```python\nprint(add([1, 2]))\n```"
    )
    program = extract_program(answer, "add")
    assert "def add(xs)" in program and "print(" not in program


def test_extract_bare_completion_prepends_prompt() -> None:
    program = extract_program("    return sum(xs)\n", "add", PROMPT)
    assert program.startswith(PROMPT) and program.endswith("    return sum(xs)\n")


def test_extract_full_function_keeps_prompt_imports() -> None:
    answer = "```python\ndef add(xs: List[int]) -> int:\n    return sum(xs)\n```"
    program = extract_program(answer, "add", PROMPT)
    assert program.startswith("from typing import List")
    assert program.rstrip().endswith("return sum(xs)")
    namespace: dict[str, object] = {}
    exec(program, namespace)  # noqa: S102 - trusted test code
    assert namespace["add"]([1, 2]) == 3  # type: ignore[operator]


def test_extract_without_fence_or_prompt() -> None:
    assert extract_program("def f():\n    return 1", "f") == "def f():\n    return 1\n"


def test_docstring_examples() -> None:
    assert docstring_examples(PROMPT) == ">>> add([1, 2])\n3"
    assert docstring_examples("def f():\n    pass\n") == ""


def test_mbpp_entry_point() -> None:
    assert entry_point("def a(x):\n  pass\ndef b(y):\n  pass", ["assert b(1) == 2"]) == "b"
    assert entry_point("class P:\n  pass", ["assert max_chain(P(1)) == 3"]) == "max_chain"


def test_build_job_arguments() -> None:
    doc = Doc("t/1", "p", {"entry_point": "f", "tests": "assert f() == 1", "code_prompt": "def f():\n"})
    task = get_task("humaneval")
    assert isinstance(task, CodeTask)
    assert task.build_job(doc, completion="    return 1\n").program == "def f():\n    return 1\n"
    assert task.build_job(doc, solution="def f(): return 1").program == "def f(): return 1"
    with pytest.raises(ValueError, match="exactly one"):
        task.build_job(doc)
    assert task.build_job(doc, solution="").timeout == task.timeout_s  # no measured reference: the floor


def test_time_limits_come_from_measured_reference_runtimes(data_dir: Path) -> None:
    """Every problem has a measured reference runtime; a slow reference raises its limit above the floor
    (mbpp/123 sums divisors by trial division: seconds), a fast one keeps the floor."""
    from shepherd_bench.sandbox import calibrate_timeout
    from shepherd_bench.tasks.code import REFERENCE_FACTOR, reference_times

    table = reference_times()
    for name in ("humaneval", "mbpp", "mbpp_sanitized"):
        task = get_task(name)
        docs = task.load(data_dir).docs
        assert {d.id for d in docs} <= set(table[name]), name
    mbpp = get_task("mbpp")
    docs = {d.id: d for d in mbpp.load(data_dir).docs}
    slow, fast = docs["mbpp/123"], docs["mbpp/11"]
    assert table["mbpp"]["mbpp/123"] > 1.0
    assert mbpp.build_job(slow, solution="").timeout == calibrate_timeout(
        table["mbpp"]["mbpp/123"], floor=mbpp.timeout_s, factor=REFERENCE_FACTOR) > mbpp.timeout_s
    assert mbpp.build_job(fast, solution="").timeout == mbpp.timeout_s


def test_humaneval_score_right_wrong_and_empty() -> None:
    task = get_task("humaneval")
    docs = task.load().docs[:3]
    right = [f"```python\n{d.record['code_prompt']}{d.record['canonical_solution']}```" for d in docs]
    bare = [d.record["canonical_solution"] for d in docs]
    wrong = [f"```python\ndef {d.record['entry_point']}(*a):\n    return None\n```" for d in docs]
    answers = right[:1] + bare[1:2] + wrong[2:]
    scores = task.score(docs, answers, workers=2)
    assert [s.status for s in scores] == ["pass", "pass", "fail"]
    empty = task.score(docs[:2], ["", "```python\n\n```"])
    assert [s.status for s in empty] == ["no_answer", "no_answer"]


def test_runaway_program_times_out() -> None:
    class QuickHumanEval(HumanEval):
        timeout_s = 1.0

    task = QuickHumanEval()
    doc = task.load().docs[0]
    looping = f"```python\ndef {doc.record['entry_point']}(*a):\n    while True: pass\n```"
    assert task.score([doc], [looping])[0].status == "timeout"


def test_mbpp_score_right_and_wrong(data_dir: Path) -> None:
    task = get_task("mbpp")
    docs = task.load(data_dir).docs[:4]
    right = [f"Sure.\n```python\n{d.record['reference']}\n```" for d in docs]
    wrong = [f"```python\ndef {d.record['entry_point']}(*a):\n    return 12345\n```" for d in docs]
    assert all(s.correct for s in task.score(docs, right, workers=2))
    assert not any(s.correct for s in task.score(docs, wrong, workers=2))


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass() -> None:
    task = get_task("humaneval")
    assert isinstance(task, CodeTask)
    docs = task.load().docs
    verdicts = run_batch([task.build_job(d, completion=d.record["canonical_solution"]) for d in docs])
    failed = {d.id: v.detail for d, v in zip(docs, verdicts, strict=True) if not v.passed}
    assert len(docs) == 164 and failed == {}
    # The same solutions written as chat answers (a fenced full function) go through extraction.
    answers = [f"Here you go:\n```python\n{d.record['code_prompt']}{d.record['canonical_solution']}```\n"
               for d in docs]
    scores = task.score(docs, answers)
    assert [d.id for d, s in zip(docs, scores, strict=True) if not s.correct] == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mbpp", "mbpp_sanitized"])
def test_mbpp_reference_programs_pass(data_dir: Path, name: str) -> None:
    """Every reference program of the test split passes, except the documented upstream exceptions."""
    task = get_task(name)
    assert isinstance(task, CodeTask)
    docs = task.load(data_dir).docs
    verdicts = run_batch([task.build_job(d, solution=d.record["reference"]) for d in docs])
    failed = {d.record["task_id"]: v.status for d, v in zip(docs, verdicts, strict=True) if not v.passed}
    expected = {t: "fail" for t in UPSTREAM_FAILURES if t in {d.record["task_id"] for d in docs}}
    assert failed == expected
    assert set(UPSTREAM_FAILURES) == {341}
