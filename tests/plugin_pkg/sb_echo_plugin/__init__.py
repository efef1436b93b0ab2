"""A plugin strategy: the SLM answers, with a fixed note appended (the note is a typed parameter)."""

from __future__ import annotations

from typing import ClassVar

from shepherd_bench.strategies.base import Attempt, ModelPair, Param, Query, StrategyBase, single_call_attempt


class EchoSLM(StrategyBase):
    """SLM-only, with a suffix appended to each answer."""

    name: ClassVar[str] = "plugin-echo"
    kind: ClassVar[str] = "baseline"
    params: ClassVar[tuple[Param, ...]] = (Param("suffix", str, "", "text appended to every answer"),)

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        results = models.small.generate([q.request() for q in queries])
        attempts = [single_call_attempt(q, "small", r) for q, r in zip(queries, results, strict=True)]
        for a in attempts:
            a.answer += self.config["suffix"]
        return attempts
