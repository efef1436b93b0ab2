"""The two reference points: SLM-only and LLM-only."""

from __future__ import annotations

from typing import ClassVar

from .base import Attempt, ModelPair, Param, Query, StrategyBase, single_call_attempt


class SLMOnly(StrategyBase):
    name: ClassVar[str] = "slm"
    kind: ClassVar[str] = "baseline"
    params: ClassVar[tuple[Param, ...]] = ()
    roles: ClassVar[frozenset[str]] = frozenset({"small"})

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        results = models.small.generate([q.request() for q in queries], progress=True)
        return [single_call_attempt(q, "small", r) for q, r in zip(queries, results, strict=True)]


class LLMOnly(StrategyBase):
    name: ClassVar[str] = "llm"
    kind: ClassVar[str] = "baseline"
    params: ClassVar[tuple[Param, ...]] = ()
    roles: ClassVar[frozenset[str]] = frozenset({"large"})

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        results = models.large.generate([q.request() for q in queries], progress=True)
        return [single_call_attempt(q, "large", r) for q, r in zip(queries, results, strict=True)]
