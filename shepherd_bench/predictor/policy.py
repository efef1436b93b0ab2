"""A trained hint predictor as the live shepherd strategy's ``HintPolicy`` (``-S policy=predicted``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from ..strategies.base import Query
from .model import FULL, HintPredictor

HintSize = int | Literal["full"]


def query_text(query: Query) -> str:
    """The text the predictor saw in training: the (last) user turn, as the grid stores it."""
    users = [m.content for m in query.messages if m.role == "user"]
    return users[-1] if users else ""


class PredictedHintPolicy:
    """``hint_for(query)``: 0 (no hint), a token count, or ``"full"``; proactive models only."""

    def __init__(self, model: HintPredictor, threshold: float | None = None) -> None:
        if model.reactive:
            raise ValueError("a reactive predictor needs the SLM's first samples, which the live fixed/predicted "
                             "shepherd path does not draw; train a proactive one for -S policy=predicted")
        self.model = model
        self.threshold = model.threshold if threshold is None else threshold
        self.last_ms = 0.0
        self._last: dict[str, Any] = {}

    def hint_for(self, query: Query) -> HintSize:
        t0 = time.perf_counter()
        x = self.model.features([query_text(query)])
        p = float(self.model.p_need(x)[0])
        k = int(self.model.decide(x, self.threshold)[0])
        self.last_ms = (time.perf_counter() - t0) * 1000
        self._last = {"query_id": query.id, "p_need": round(p, 4)}
        return "full" if k == FULL else k

    def explain(self, query: Query) -> dict[str, Any]:
        info = {"hint_source": "predictor", "threshold": self.threshold, "decision_ms": round(self.last_ms, 3),
                "featurizer": self.model.featurizer.kind, "train_hash": self.model.meta.get("train_hash")}
        if self._last.get("query_id") == query.id:
            info["p_need"] = self._last["p_need"]
        return info


def load_policy(path: str | Path, threshold: float | None = None) -> PredictedHintPolicy:
    """The ``HintPolicy`` saved at ``path`` (a folder with model.json + arrays.npz)."""
    return PredictedHintPolicy(HintPredictor.load(Path(path)), threshold)
