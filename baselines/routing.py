"""Routing baselines with RouteLLM's split: a router *scores* each query (higher = the LLM is more
needed); ``-S threshold=`` decides (score >= threshold -> LLM), so a sweep is a loop over thresholds.
``-S llm_fraction=`` instead calibrates the threshold to send that share of queries to the LLM, on
held-out scores (the calibration split of the labels, never the evaluated queries).

- ``route-random``: a seeded uniform score per query id (threshold t sends ~(1 - t) to the LLM).
- ``route-knn``: mean label of the k nearest labelled training queries (cosine on query features).
- ``route-logistic``: logistic regression on query features.
Learned routers read a labels file (see ``labels.py``); their label is RouteLLM's "the LLM wins":
the LLM was correct and the SLM was not.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np

from shepherd_bench.backends.base import GenRequest
from shepherd_bench.strategies.base import (
    Attempt,
    ModelPair,
    Param,
    ParamError,
    Query,
    StrategyBase,
    single_call_attempt,
)

from .features import Featurizer, featurizer_name, make_featurizer
from .labels import LabelRow, Splits, _unit, assert_disjoint, cross_fit, load_labels, split_rows


class Router(Protocol):
    def score(self, queries: list[Query]) -> np.ndarray: ...


def calibrate_threshold(scores: np.ndarray, llm_fraction: float) -> float:
    """The threshold that sends ``llm_fraction`` of these (held-out) scores to the LLM (score >= t).

    Ties at the cut can send a little more; 0 sends none (just above the maximum), 1 sends all."""
    if not 0.0 <= llm_fraction <= 1.0:
        raise ParamError(f"llm_fraction={llm_fraction} must be within [0, 1]")
    s = np.sort(np.asarray(scores, dtype=float))[::-1]
    if s.size == 0:
        raise ParamError("llm_fraction needs held-out scores to calibrate on, and there are none")
    n_llm = int(round(llm_fraction * s.size))
    if n_llm == 0:
        return float(np.nextafter(s[0], np.inf))
    return float(s[n_llm - 1])


ROUTER_PARAMS: tuple[Param, ...] = (
    Param("threshold", float, 0.5, "score >= threshold -> LLM"),
    Param("llm_fraction", float, None, "instead of threshold: calibrate it to send this share to the LLM"),
    Param("seed", int, 0, "added to the run seed"),
)
LEARNED_PARAMS: tuple[Param, ...] = (
    Param("labels", str, "", "JSONL labels file (query text, slm_correct, llm_correct): replay --export-labels"),
    Param("embedder", str, "auto", "query features: minilm embeddings, or hashed TF-IDF (auto: minilm if installed)",
          ("auto", "minilm", "tfidf")),
    Param("calib_fraction", float, 0.2, "share of label rows held out to calibrate llm_fraction (no split field)"),
)


class RouterStrategy(StrategyBase):
    """Shared solve: score, threshold, one SLM call and one LLM call for the whole batch."""

    kind: ClassVar[str] = "route"

    def router(self, models: ModelPair) -> Router:  # pragma: no cover - abstract
        raise NotImplementedError

    def calibration_scores(self, models: ModelPair) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def threshold(self, models: ModelPair) -> float:
        f = self.config["llm_fraction"]
        return float(self.config["threshold"]) if f is None else calibrate_threshold(self.calibration_scores(models), f)

    @classmethod
    def replay_scores(cls, labels: list[dict[str, Any]], *, seed: int = 0, folds: int = 5,
                      params: dict[str, Any] | None = None) -> np.ndarray:
        """Router scores (higher = send to the LLM) for every labelled query of a hint grid (``labels``: one
        labels-file object per query), each from a router that never saw that query's label
        (``shepherd-bench replay --policy route:NAME``)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        scores = self.router(models).score(queries)
        t = self.threshold(models)
        to_llm = [bool(s >= t) for s in scores]
        attempts = _route(queries, to_llm, models)
        for a, s, big in zip(attempts, scores, to_llm, strict=True):
            a.decision = {"routed": "large" if big else "small", "score": round(float(s), 6), "threshold": t}
        return attempts


def _route(queries: list[Query], to_llm: list[bool], models: ModelPair) -> list[Attempt]:
    """One call per model for the whole batch; attempts come back in query order."""
    out: dict[int, Attempt] = {}
    for role, backend, want in (("small", models.small, False), ("large", models.large, True)):
        idx = [i for i, b in enumerate(to_llm) if b is want]
        reqs: list[GenRequest] = [queries[i].request() for i in idx]
        for i, res in zip(idx, backend.generate(reqs), strict=True):
            out[i] = single_call_attempt(queries[i], role, res)
    return [out[i] for i in range(len(queries))]


class RandomRouter:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def score(self, queries: list[Query]) -> np.ndarray:
        return np.array([_unit(self.seed, q.id) for q in queries])


class RouteRandom(RouterStrategy):
    """Random router: a seeded uniform score per query (the floor every router must beat)."""

    name: ClassVar[str] = "route-random"
    params: ClassVar[tuple[Param, ...]] = ROUTER_PARAMS

    def router(self, models: ModelPair) -> Router:
        return RandomRouter(models.seed + self.config["seed"])

    @classmethod
    def replay_scores(cls, labels: list[dict[str, Any]], *, seed: int = 0, folds: int = 5,
                      params: dict[str, Any] | None = None) -> np.ndarray:
        """The same seeded scores a live run with run seed ``seed`` draws (nothing is fitted)."""
        s = seed + cls.parse_config(params or {})["seed"]
        return np.array([_unit(s, str(r["query_id"])) for r in labels])

    def threshold(self, models: ModelPair) -> float:
        f = self.config["llm_fraction"]
        return float(self.config["threshold"]) if f is None else 1.0 - float(f)  # exact for uniform scores


class LearnedRouter:
    """Query features -> P(the LLM wins); refuses to score a query it was fitted or calibrated on."""

    def __init__(self, featurizer: Featurizer, model: Any, splits: Splits, name: str) -> None:
        self.featurizer, self.model, self.splits, self.name = featurizer, model, splits, name

    def score_texts(self, texts: list[str]) -> np.ndarray:
        X = self.featurizer.transform(texts)
        return np.asarray(self.model.predict_proba(X))[:, -1] if _two_classes(self.model) else \
            np.full(len(texts), float(self.model.classes_[0]))

    def score(self, queries: list[Query]) -> np.ndarray:
        assert_disjoint([q.id for q in queries], self.splits.ids(), self.name)
        return self.score_texts([q.user_text() for q in queries])


class Constant:
    """Stands in for a classifier when every training label is the same."""

    def __init__(self, label: int) -> None:
        self.classes_ = np.array([label])


def _two_classes(model: Any) -> bool:
    return len(getattr(model, "classes_", [])) == 2


def llm_wins(rows: list[LabelRow]) -> np.ndarray:
    return np.array([int(r.llm_correct and not r.slm_correct) for r in rows])


class LearnedRouterStrategy(RouterStrategy):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.config["labels"]:
            raise ParamError(f"strategy '{self.name}' needs -S labels=PATH (JSONL labels: shepherd-bench replay --grid G --export-labels FILE)")
        self._router: LearnedRouter | None = None

    @classmethod
    def estimator(cls, config: dict[str, Any], n_train: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def fit_router(cls, config: dict[str, Any], splits: Splits) -> LearnedRouter:
        """Featuriser and classifier fitted on ``splits.train`` (label: the LLM wins)."""
        if not splits.train:
            raise ParamError(f"strategy '{cls.name}': no training rows")
        feat = make_featurizer(config["embedder"]).fit([r.text for r in splits.train])
        y = llm_wins(splits.train)
        model = Constant(int(y[0])) if len(set(y.tolist())) < 2 else \
            cls.estimator(config, len(y)).fit(feat.transform([r.text for r in splits.train]), y)
        return LearnedRouter(feat, model, splits, cls.name)

    def router(self, models: ModelPair) -> LearnedRouter:
        if self._router is None:
            c = self.config
            splits = split_rows(load_labels(c["labels"]), c["calib_fraction"], models.seed + c["seed"])
            if not splits.train:
                raise ParamError(f"strategy '{self.name}': no training rows in {c['labels']!r}")
            self._router = self.fit_router(c, splits)
        return self._router

    @classmethod
    def replay_scores(cls, labels: list[dict[str, Any]], *, seed: int = 0, folds: int = 5,
                      params: dict[str, Any] | None = None) -> np.ndarray:
        """Cross-fitted: k folds by query (seeded); each fold scored by a router fitted on the others, so
        no query is scored by a router that saw its label. ``params`` need no ``labels`` file: the grid's
        labels are passed in."""
        config = cls.parse_config(params or {})

        def fit_score(train: list[LabelRow], held_out: list[LabelRow]) -> np.ndarray:
            return cls.fit_router(config, Splits(train, [])).score_texts([x.text for x in held_out])

        return cross_fit(labels, folds, seed, cls.name, fit_score)

    def calibration_scores(self, models: ModelPair) -> np.ndarray:
        r = self.router(models)
        return r.score_texts([row.text for row in r.splits.calib]) if r.splits.calib else np.array([])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["featurizer"] = featurizer_name(self.config["embedder"])
        return d


class RouteKNN(LearnedRouterStrategy):
    """kNN router: share of the k nearest labelled queries where the LLM won (cosine on query features)."""

    name: ClassVar[str] = "route-knn"
    params: ClassVar[tuple[Param, ...]] = ROUTER_PARAMS + LEARNED_PARAMS + (
        Param("k", int, 10, "neighbours"),
    )

    @classmethod
    def estimator(cls, config: dict[str, Any], n_train: int) -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=min(config["k"], n_train), metric="cosine", algorithm="brute")


class RouteLogistic(LearnedRouterStrategy):
    """Logistic-regression router: P(the LLM wins) from query features."""

    name: ClassVar[str] = "route-logistic"
    params: ClassVar[tuple[Param, ...]] = ROUTER_PARAMS + LEARNED_PARAMS + (
        Param("C", float, 1.0, "inverse regularisation strength"),
    )

    @classmethod
    def estimator(cls, config: dict[str, Any], n_train: int) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=config["C"], solver="liblinear")
