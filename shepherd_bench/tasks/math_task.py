"""Math tasks: a question in, a final answer out, graded by extraction and equivalence."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..strategies.base import Query
from .base import SYSTEM_MATH, Doc, Score, chat
from .math_answers import answers_match, extract_answer


def score_answer(answer: str, gold: str) -> Score:
    extracted = extract_answer(answer)
    if extracted is None:
        return Score(False, "no_answer", "no final answer found", extracted=None)
    ok = answers_match(extracted, gold)
    return Score(ok, "pass" if ok else "fail", "" if ok else f"expected {gold!r}", extracted=extracted)


class MathTask:
    """Shared behaviour of math tasks; ``doc.record["gold"]`` is the reference final answer."""

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["code", "math"]] = "math"
    max_tokens: ClassVar[int] = 768

    def query(self, doc: Doc) -> Query:
        return Query(id=doc.id, messages=chat(SYSTEM_MATH, doc.prompt), max_tokens=self.max_tokens,
                     task=self.name, kind=self.kind)

    def score(self, docs: list[Doc], answers: list[str], workers: int | None = None) -> list[Score]:
        """``workers`` is accepted for the Task protocol; math grading is pure and fast."""
        if len(docs) != len(answers):
            raise ValueError(f"{len(docs)} docs but {len(answers)} answers")
        return [score_answer(a, str(d.record["gold"])) for d, a in zip(docs, answers, strict=True)]
