"""Plugin strategies: an SLM that appends a fixed note (a typed parameter), and a router scored on hint
grids through the replay protocol."""

from __future__ import annotations

from typing import Any, ClassVar

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


class RouteByLength(StrategyBase):
    """A plugin router: the longer the query, the likelier it goes to the LLM (score = words in the user
    turn). It implements the replay protocol (``replay_scores``), so `shepherd-bench replay --policy
    route:plugin-length` scores it on any hint grid without a model call."""

    name: ClassVar[str] = "route-plugin-length"
    kind: ClassVar[str] = "route"
    params: ClassVar[tuple[Param, ...]] = (Param("threshold", float, 200.0, "words at or above which the LLM answers"),)

    @staticmethod
    def score(text: str) -> float:
        return float(len(text.split()))

    @classmethod
    def replay_scores(cls, labels: list[dict[str, Any]], *, seed: int = 0, folds: int = 5,
                      params: dict[str, Any] | None = None) -> list[float]:
        """One score per labelled query, from its text alone (nothing is fitted, so no folds are needed)."""
        return [cls.score(str(r["text"])) for r in labels]

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        users = [[m.content for m in q.messages if m.role == "user"][-1] for q in queries]
        big = [self.score(u) >= self.config["threshold"] for u in users]
        out: dict[int, Attempt] = {}
        for role, backend, want in (("small", models.small, False), ("large", models.large, True)):
            idx = [i for i, b in enumerate(big) if b is want]
            for i, res in zip(idx, backend.generate([queries[i].request() for i in idx]), strict=True):
                out[i] = single_call_attempt(queries[i], role, res)
        return [out[i] for i in range(len(queries))]


class CascadeByLength(StrategyBase):
    """A plugin cascade: the SLM answers; the longer its answer, the less it is trusted (score = minus the
    words of the SLM's answer; defer to the LLM when the score is below the threshold). It implements the
    replay protocol (``replay_scores``, from the SLM's recorded answer), so `shepherd-bench replay --policy
    cascade:plugin-length` scores it on any hint grid without a model call."""

    name: ClassVar[str] = "cascade-plugin-length"
    kind: ClassVar[str] = "cascade"
    params: ClassVar[tuple[Param, ...]] = (Param("threshold", float, -200.0, "defer when -words < threshold"),)

    @staticmethod
    def score(answer: str) -> float:
        return -float(len(answer.split()))

    @classmethod
    def replay_scores(cls, labels: list[dict[str, Any]], *, seed: int = 0, folds: int = 5,
                      params: dict[str, Any] | None = None) -> list[float]:
        """One score per labelled query, from the SLM's answer (``slm_answer``) alone."""
        return [cls.score(str(r.get("slm_answer", ""))) for r in labels]

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        first = models.small.generate([q.request() for q in queries])
        out = [single_call_attempt(q, "small", r) for q, r in zip(queries, first, strict=True)]
        defer = [i for i, r in enumerate(first) if self.score(r.text) < self.config["threshold"]]
        for i, res in zip(defer, models.large.generate([queries[i].request() for i in defer]), strict=True):
            deferred = single_call_attempt(queries[i], "large", res)
            deferred.calls = out[i].calls + deferred.calls  # both calls are metered
            out[i] = deferred
        return out
