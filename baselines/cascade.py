"""Cascading baselines: the SLM answers first; where a deferral signal (its *score*) is below the
``threshold``, the query is deferred and the LLM's full answer replaces the SLM's.

- ``cascade-logprob``: mean token log-probability of the SLM's greedy answer (needs a backend that
  reports logprobs);
- ``cascade-agreement``: ``samples`` SLM samples, score = share agreeing with the majority (ABC-style);
  the answer kept is a majority sample;
- ``cascade-frugal``: a FrugalGPT-style scorer, logistic regression on (query, answer) features trained
  on a labels file, score = P(the SLM's answer is correct).
Signals read only the query and the SLM's output, never grading tests or gold answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from shepherd_bench.backends.base import GenRequest, GenResult
from shepherd_bench.backends.meter import CallRecord
from shepherd_bench.errors import UserError
from shepherd_bench.strategies.base import (
    Attempt,
    ModelPair,
    Param,
    ParamError,
    Query,
    StrategyBase,
    query_kind,
)
from shepherd_bench.strategies.consistency import agreement

from .labels import LabelRow, Splits, assert_disjoint, cross_fit, load_labels, split_rows
from .routing import Constant, calibrate_threshold


@dataclass
class Signal:
    score: float
    answer: str  # the SLM text (after the known answer prefix) kept when the query is not deferred


class CascadeStrategy(StrategyBase):
    """Shared solve: one SLM call for the batch, the signals, one LLM call for the deferred queries."""

    kind: ClassVar[str] = "cascade"

    def slm_requests(self, q: Query, models: ModelPair) -> list[GenRequest]:
        return [q.request()]

    def signals(self, queries: list[Query], results: list[list[GenResult]], models: ModelPair) -> list[Signal]:
        raise NotImplementedError  # pragma: no cover - abstract

    def threshold(self, models: ModelPair) -> float:
        return float(self.config["threshold"])

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        per_q = [self.slm_requests(q, models) for q in queries]
        flat = models.small.generate([r for rs in per_q for r in rs])
        groups, at = [], 0
        for rs in per_q:
            groups.append(flat[at : at + len(rs)])
            at += len(rs)
        attempts = [_slm_attempt(q, g, "sample" if len(g) > 1 else "answer") for q, g in zip(queries, groups, strict=True)]
        ok = [i for i, a in enumerate(attempts) if a.error is None]
        sigs = self.signals([queries[i] for i in ok], [groups[i] for i in ok], models)
        t = self.threshold(models)
        deferred = [i for i, s in zip(ok, sigs, strict=True) if s.score < t]
        for i, s in zip(ok, sigs, strict=True):
            attempts[i].answer = queries[i].complete(s.answer)
            attempts[i].decision = {"deferred": s.score < t, "score": round(s.score, 6), "threshold": t}
        self._defer(queries, attempts, deferred, models)
        return attempts

    @staticmethod
    def _defer(queries: list[Query], attempts: list[Attempt], deferred: list[int], models: ModelPair) -> None:
        results = models.large.generate([queries[i].request() for i in deferred])
        for i, res in zip(deferred, results, strict=True):
            a = attempts[i]
            a.calls.append(CallRecord.from_result("large", res, "answer"))
            a.answer = queries[i].complete(res.text) if res.ok else ""
            a.error = None if res.ok else f"large answer call failed: {res.error}"


def _slm_attempt(q: Query, group: list[GenResult], purpose: str) -> Attempt:
    calls = [CallRecord.from_result("small", r, purpose) for r in group]
    err = next((r.error for r in group if not r.ok), None)
    return Attempt(q.id, "", calls, {}, None if err is None else f"small {purpose} call failed: {err}")


class CascadeLogprob(CascadeStrategy):
    """Defer when the SLM answer's mean token log-probability is below the threshold."""

    name: ClassVar[str] = "cascade-logprob"
    params: ClassVar[tuple[Param, ...]] = (
        Param("threshold", float, -0.5, "defer when mean token logprob < threshold"),
    )

    def slm_requests(self, q: Query, models: ModelPair) -> list[GenRequest]:
        return [q.request(logprobs=True)]

    def signals(self, queries: list[Query], results: list[list[GenResult]], models: ModelPair) -> list[Signal]:
        out = []
        for (res,) in results:
            if res.token_logprobs is None:
                raise UserError(f"cascade-logprob: backend {models.small.identity.short()} returned no logprobs; "
                                "use a backend that reports them, or cascade-agreement")
            mean = float(np.mean(res.token_logprobs)) if res.token_logprobs else float("-inf")
            out.append(Signal(mean if np.isfinite(mean) else -1e9, res.text))
        return out


class CascadeAgreement(CascadeStrategy):
    """Defer when fewer than ``threshold`` of the SLM's samples agree with their majority (ABC-style)."""

    name: ClassVar[str] = "cascade-agreement"
    params: ClassVar[tuple[Param, ...]] = (
        Param("threshold", float, 0.6, "defer when the agreeing share < threshold"),
        Param("samples", int, 5, "SLM samples per query"),
        Param("temperature", float, 0.7, "SLM sampling temperature"),
        Param("task_kind", str, "auto", "math (final answers) or code (normalised code) agreement",
              ("auto", "math", "code")),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.config["samples"] < 2:
            raise ParamError("strategy 'cascade-agreement': samples must be >= 2")

    def slm_requests(self, q: Query, models: ModelPair) -> list[GenRequest]:
        t = self.config["temperature"]
        return [q.request(temperature=t, seed=models.seed + j) for j in range(self.config["samples"])]

    def signals(self, queries: list[Query], results: list[list[GenResult]], models: ModelPair) -> list[Signal]:
        out = []
        for q, group in zip(queries, results, strict=True):
            agree = agreement([r.text for r in group], query_kind(q, self.config["task_kind"]))
            out.append(Signal(agree.fraction, group[agree.choice].text))
        return out


def answer_stats(answer: str) -> list[float]:
    """Cheap answer features: length, whether a final answer / parsable code is present."""
    from shepherd_bench.strategies.consistency import code_key, math_key

    code = code_key(answer) or ""
    return [float(np.log1p(len(answer.split()))), float(math_key(answer) is not None), float(code.startswith("ast:"))]


class FrugalScorer:
    """P(the SLM's answer is correct) from hashed TF-IDF of query and answer plus ``answer_stats``."""

    def __init__(self, C: float = 1.0) -> None:
        from .features import HashedTfidf

        self.q_feat, self.a_feat, self.C = HashedTfidf(2**14), HashedTfidf(2**14), C
        self.model: Any = None

    def _X(self, texts: list[str], answers: list[str]) -> Any:
        from scipy.sparse import csr_matrix, hstack

        stats = csr_matrix(np.array([answer_stats(a) for a in answers]))
        return hstack([self.q_feat.transform(texts), self.a_feat.transform(answers), stats]).tocsr()

    def fit(self, rows: list[LabelRow]) -> FrugalScorer:
        from sklearn.linear_model import LogisticRegression

        texts, answers = [r.text for r in rows], [r.slm_answer for r in rows]
        self.q_feat.fit(texts)
        self.a_feat.fit(answers)
        y = np.array([int(r.slm_correct) for r in rows])
        self.model = Constant(int(y[0])) if len(set(y.tolist())) < 2 else \
            LogisticRegression(C=self.C, solver="liblinear").fit(self._X(texts, answers), y)
        return self

    def score(self, texts: list[str], answers: list[str]) -> np.ndarray:
        if isinstance(self.model, Constant):
            return np.full(len(texts), float(self.model.classes_[0]))
        return np.asarray(self.model.predict_proba(self._X(texts, answers)))[:, 1]


class CascadeFrugal(CascadeStrategy):
    """FrugalGPT-style: a learned scorer of the SLM's (query, answer); defer when P(correct) < threshold."""

    name: ClassVar[str] = "cascade-frugal"
    params: ClassVar[tuple[Param, ...]] = (
        Param("threshold", float, 0.5, "defer when P(SLM answer correct) < threshold"),
        Param("llm_fraction", float, None, "instead of threshold: calibrate it to defer this share (held-out labels)"),
        Param("labels", str, "", "JSONL labels with slm_answer and slm_correct: replay --export-labels"),
        Param("calib_fraction", float, 0.2, "share of label rows held out for calibration (no split field)"),
        Param("C", float, 1.0, "inverse regularisation strength"),
        Param("seed", int, 0, "added to the run seed"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.config["labels"]:
            raise ParamError("strategy 'cascade-frugal' needs -S labels=PATH (JSONL labels: shepherd-bench replay --grid G --export-labels FILE)")
        self._fitted: tuple[FrugalScorer, Splits] | None = None

    @classmethod
    def replay_scores(cls, labels: list[dict[str, Any]], *, seed: int = 0, folds: int = 5,
                      params: dict[str, Any] | None = None) -> np.ndarray:
        """The replay protocol: P(the SLM's answer is correct) per labelled query, cross-fitted k folds by
        query (seeded), each fold scored by a scorer fitted on the others' (text, slm_answer, slm_correct)."""
        config = cls.parse_config({"labels": "grid labels", **(params or {})})

        def fit_score(train: list[LabelRow], held_out: list[LabelRow]) -> np.ndarray:
            return FrugalScorer(config["C"]).fit(train).score([r.text for r in held_out],
                                                              [r.slm_answer for r in held_out])

        return cross_fit(labels, folds, seed, cls.name, fit_score)

    def scorer(self, models: ModelPair) -> tuple[FrugalScorer, Splits]:
        if self._fitted is None:
            c = self.config
            splits = split_rows(load_labels(c["labels"]), c["calib_fraction"], models.seed + c["seed"])
            train = [r for r in splits.train if r.slm_answer]
            if not train:
                raise UserError(f"cascade-frugal: {c['labels']!r} has no train rows with slm_answer")
            self._fitted = (FrugalScorer(c["C"]).fit(train), splits)
        return self._fitted

    def threshold(self, models: ModelPair) -> float:
        f = self.config["llm_fraction"]
        if f is None:
            return float(self.config["threshold"])
        scorer, splits = self.scorer(models)
        calib = [r for r in splits.calib if r.slm_answer]
        held_out = scorer.score([r.text for r in calib], [r.slm_answer for r in calib]) if calib else np.array([])
        cut = -calibrate_threshold(-held_out, f)  # the lowest-scoring share f has score <= cut
        return float(np.nextafter(cut, np.inf))  # deferral is score < threshold

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        assert_disjoint([q.id for q in queries], self.scorer(models)[1].ids(), self.name)  # before any call
        return super().solve(queries, models)

    def signals(self, queries: list[Query], results: list[list[GenResult]], models: ModelPair) -> list[Signal]:
        scorer, _ = self.scorer(models)
        answers = [g[0].text for g in results]
        scores = scorer.score([q.user_text() for q in queries], answers)
        return [Signal(float(s), a) for s, a in zip(scores, answers, strict=True)]
