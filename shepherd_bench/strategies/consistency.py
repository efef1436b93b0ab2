"""Self-consistency of several SLM samples: a check a strategy may use at inference time.

It reads only the samples themselves (never gold answers or grading tests):
- math: samples agree when their extracted final answers are numerically equal;
- code: samples agree when their code is equal after normalisation (parsed and re-printed by ``ast``,
  which drops comments, docstrings and formatting; unparsable code falls back to whitespace-collapsed
  text).

For code whose prompt has doctest examples, the adaptive shepherd runs the samples on them instead
(``examples_check.py``).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


def math_key(text: str) -> str | None:
    """The final answer as a canonical string (a reduced fraction when numeric); None if none is found."""
    from ..tasks.math_answers import extract_answer, normalize_expr, parse_number

    raw = extract_answer(text)
    if raw is None:
        return None
    num = parse_number(raw)
    return f"num:{num}" if num is not None else f"expr:{normalize_expr(raw)}"


def code_key(text: str) -> str | None:
    """The answer's code, normalised: ``ast`` round-trip without docstrings; None if there is no code."""
    blocks = _FENCE.findall(text)
    code = max(blocks, key=len) if blocks else text
    if not code.strip():
        return None
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "text:" + " ".join(code.split())
    _drop_docstrings(tree)
    return "ast:" + ast.unparse(tree)


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]


def answer_key(text: str, kind: str) -> str | None:
    return code_key(text) if kind == "code" else math_key(text)


@dataclass(frozen=True)
class Agreement:
    fraction: float  # share of samples in the largest agreeing group (unextractable samples agree with none)
    choice: int  # index of the first sample of that group: the answer a strategy returns
    key: str | None


def agreement(texts: list[str], kind: str) -> Agreement:
    """How many of ``texts`` agree (ABC-style): the largest group of equal answer keys over all samples."""
    if not texts:
        return Agreement(0.0, 0, None)
    keys = [answer_key(t, kind) for t in texts]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return Agreement(0.0, 0, None)
    best, n = max(counts.items(), key=lambda kv: (kv[1], -keys.index(kv[0])))
    return Agreement(n / len(texts), keys.index(best), best)
