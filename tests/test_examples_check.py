"""The docstring-example check of the adaptive shepherd, against HumanEval's real prompts: every
canonical solution passes the doctest examples of its own prompt, wrong programs fail, and MBPP's
visible tests (its grading tests) are never run as examples."""

from __future__ import annotations

from pathlib import Path

from shepherd_bench.strategies.examples_check import (
    check_samples,
    doctest_examples,
    entry_point,
    example_tests,
)
from shepherd_bench.tasks import get_task


def test_parsing_keeps_expression_examples_only() -> None:
    text = ">>> f(1, [2])  # note\n[1, 2]\n>>> print(f(2))\nhello world\n>>> f('a')\n'a'\n\nf(3) ==> 4"
    ex = doctest_examples(text)
    assert [(e.expr, e.expected) for e in ex] == [("f(1, [2])", "[1, 2]"), ("f('a')", "'a'")]
    assert entry_point(ex) == "f"
    assert example_tests(ex).splitlines()[0] == "assert (f(1, [2])) == ([1, 2]), 'f(1, [2])'"
    assert doctest_examples("assert f(1) == 2") == []


def test_humaneval_canonical_solutions_pass_their_docstring_examples() -> None:
    task = get_task("humaneval")
    docs = task.load(None).docs
    groups, ids = [], []
    for d in docs:
        ex = doctest_examples(str(d.record["public_examples"]))
        if ex:
            program = f"```python\n{d.record['code_prompt']}{d.record['canonical_solution']}```"
            wrong = f"```python\ndef {entry_point(ex)}(*args, **kwargs):\n    return None\n```"
            groups.append(([program, wrong], ex))
            ids.append(d.id)
    assert len(groups) >= 60  # most HumanEval prompts carry doctest examples
    checks = check_samples(groups)
    failing = [i for i, c in zip(ids, checks, strict=True) if not c.passing[0]]
    # upstream: HumanEval/47's docstring says median([-10, 4, 6, 1000, 10, 20]) is 15.0; it is 8.0
    assert failing == ["HumanEval/47"], failing
    assert not any(c.passing[1] for c in checks)


def test_mbpp_visible_tests_are_not_examples(data_dir: Path) -> None:
    docs = get_task("mbpp").load(data_dir).docs[:50]
    assert all(d.record["public_examples"] and doctest_examples(str(d.record["public_examples"])) == [] for d in docs)
