"""For code: run each SLM sample on the examples written in the prompt's docstring, in the sandbox.

A check a strategy may legitimately use at inference time: only doctest-style examples
(``>>> expr`` followed by the expected output) from ``Query.public_examples`` are run, as
``assert (expr) == (expected)`` after the sample's program. HumanEval's docstring examples have this
form and are not its grading tests (those live in a separate ``check`` function). MBPP shows its three
grading tests in the prompt (``assert f(x) == y``, as in the original paper): they are not doctest
examples, so they are never run here, and MBPP's adaptive check stays self-consistency.
"""

from __future__ import annotations

import ast
import doctest
import re
from dataclasses import dataclass

EXAMPLE_TIMEOUT_S = 5.0
EXAMPLE_MEMORY_MB = 1024
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


@dataclass(frozen=True)
class Example:
    expr: str
    expected: str


def doctest_examples(public_examples: str) -> list[Example]:
    """The ``>>>`` examples whose source is one expression and whose expected output is a Python
    expression (``[1, 2]``, ``'abc'``, ``True``, ``0.5``); printed output and other forms are skipped."""
    if ">>>" not in public_examples:
        return []
    try:
        parsed = doctest.DocTestParser().get_examples(public_examples)
    except ValueError:  # inconsistent indentation and the like: no examples rather than a crash
        return []
    out = []
    for ex in parsed:
        src, want = ex.source.strip(), ex.want.strip()
        if not want or "\n" in src:
            continue
        try:  # re-printed by ast: drops trailing comments (``f(x)  # note``)
            out.append(Example(ast.unparse(ast.parse(src, mode="eval")), ast.unparse(ast.parse(want, mode="eval"))))
        except SyntaxError:
            continue
    return out


def entry_point(examples: list[Example]) -> str:
    """The function the examples call (the first call's name)."""
    for ex in examples:
        m = _CALL.match(ex.expr)
        if m:
            return m.group(1)
    return ""


def example_tests(examples: list[Example]) -> str:
    return "".join(f"assert ({ex.expr}) == ({ex.expected}), {ex.expr!r}\n" for ex in examples)


@dataclass(frozen=True)
class ExampleCheck:
    examples: int  # how many examples were run
    passing: list[bool]  # per sample: all examples pass

    @property
    def choice(self) -> int | None:
        """The first sample that passes every example, if any."""
        return next((i for i, ok in enumerate(self.passing) if ok), None)


def check_samples(groups: list[tuple[list[str], list[Example]]], workers: int | None = None) -> list[ExampleCheck]:
    """For each (sample answers, examples) group, which samples pass all the examples: one sandbox batch."""
    from ..sandbox import Job, run_batch
    from ..tasks.code import extract_program

    jobs: list[Job] = []
    where: list[tuple[int, int]] = []
    for g, (texts, examples) in enumerate(groups):
        name, tests = entry_point(examples), example_tests(examples)
        for i, text in enumerate(texts):
            program = extract_program(text, name)
            if program.strip() and examples:
                jobs.append(Job(program, tests, EXAMPLE_TIMEOUT_S, EXAMPLE_MEMORY_MB, name or None))
                where.append((g, i))
    passing = [[False] * len(texts) for texts, _ in groups]
    for (g, i), verdict in zip(where, run_batch(jobs, workers=workers) if jobs else [], strict=True):
        passing[g][i] = verdict.passed
    return [ExampleCheck(len(ex), p) for (_, ex), p in zip(groups, passing, strict=True)]
