"""A trained hint predictor as the live shepherd strategy's ``HintPolicy`` (``-S policy=predicted``).

A proactive model decides from the query alone (``hint_for(query)``). A reactive one also reads the SLM's
first samples' features (``hint_for(query, reactive=features)``, ``reactive.reactive_features``): the
shepherd strategy draws those samples itself, the way the grid drew them for training
(``sampling``); called without them it raises ``ReactiveFeaturesNeeded``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..errors import UserError
from ..strategies.base import Query
from .features import REACTIVE_NAMES
from .model import FULL, HintPredictor

HintSize = int | Literal["full"]


class ReactiveFeaturesNeeded(UserError, ValueError):
    """A reactive predictor was asked for a hint without the SLM's first samples' features."""


def query_text(query: Query) -> str:
    """The text the predictor saw in training: the (last) user turn, as the grid stores it."""
    users = [m.content for m in query.messages if m.role == "user"]
    return users[-1] if users else ""


class PredictedHintPolicy:
    """``hint_for(query[, reactive])``: 0 (no hint), a token count, or ``"full"``."""

    def __init__(self, model: HintPredictor, threshold: float | None = None,
                 full_threshold: float | None = None) -> None:
        self.model = model
        self.threshold = model.threshold if threshold is None else threshold
        self.full_threshold = math.inf if full_threshold is None else full_threshold
        self.last_ms = 0.0
        self._last: dict[str, Any] = {}

    @property
    def reactive(self) -> bool:
        """True when decisions need the SLM's first samples (``reactive.reactive_features``)."""
        return self.model.reactive

    @property
    def sampling(self) -> dict[str, Any] | None:
        """How the training grid drew those samples (samples read, temperature, seed), when recorded."""
        rec = self.model.meta.get("reactive_sampling")
        return dict(rec) if isinstance(rec, dict) else None

    def hint_for(self, query: Query, reactive: Mapping[str, float] | None = None) -> HintSize:
        import numpy as np

        if self.model.reactive and reactive is None:
            raise ReactiveFeaturesNeeded(
                "this hint predictor is reactive: it needs the SLM's first samples at hint level 0 "
                f"({', '.join(REACTIVE_NAMES)}). Run it through the shepherd strategy (-S policy=predicted), "
                "which draws them, pass hint_for(query, reactive=reactive_features(...)), or train a "
                "proactive one (without --reactive)")
        t0 = time.perf_counter()
        react = None
        if self.model.reactive and reactive is not None:
            react = np.array([[float(reactive[k]) for k in REACTIVE_NAMES]], dtype=np.float64)
        x = self.model.features([query_text(query)], react)
        p = float(self.model.p_need(x)[0])
        k = int(self.model.decide(x, self.threshold, self.full_threshold)[0])
        self.last_ms = (time.perf_counter() - t0) * 1000
        self._last = {"query_id": query.id, "p_need": round(p, 4)}
        if react is not None:
            self._last["reactive_features"] = dict(zip(REACTIVE_NAMES, react[0].tolist(), strict=True))
        return "full" if k == FULL else k

    def explain(self, query: Query) -> dict[str, Any]:
        info = {"hint_source": "predictor", "threshold": self.threshold,
                "full_threshold": None if math.isinf(self.full_threshold) else self.full_threshold, "decision_ms": round(self.last_ms, 3),
                "featurizer": self.model.featurizer.kind, "train_hash": self.model.meta.get("train_hash"),
                "reactive": self.model.reactive}
        if self._last.get("query_id") == query.id:
            info.update({k: v for k, v in self._last.items() if k != "query_id"})
        return info


def load_policy(path: str | Path, threshold: float | None = None,
                full_threshold: float | None = None) -> PredictedHintPolicy:
    """The ``HintPolicy`` saved at ``path`` (a folder with model.json + arrays.npz), with the two knobs:
    the p(need) threshold for a hint (default: the model's) and the one for the full answer (default: never)."""
    return PredictedHintPolicy(HintPredictor.load(Path(path)), threshold, full_threshold)
