"""The two-stage hint predictor: is a hint needed?  and if so, how long (log(1 + n*), Huber loss)?

Stage 1 is a class-weighted logistic regression (positives, queries needing a hint, are the minority);
stage 2 a Huber regression of ``log(1 + n*)`` on the queries that need one, ``n*`` the smallest successful
hint in LLM tokens. A query is hinted when ``p(need) >= threshold``; a predicted hint of at least
``full_above`` tokens becomes a full LLM call. Both stages are linear, so a model is saved as JSON
(spec, scalars, training-data hash) plus an ``.npz`` of arrays, loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .features import REACTIVE_NAMES, Featurizer, choose_featurizer

if TYPE_CHECKING:
    import numpy as np

FULL = -1
FORMAT = "shepherd-bench hint predictor v1"


@dataclass
class HintPredictor:
    featurizer: Featurizer
    reactive: bool
    mean: np.ndarray
    scale: np.ndarray
    clf_coef: np.ndarray
    clf_intercept: float
    reg_coef: np.ndarray
    reg_intercept: float
    threshold: float = 0.5
    full_above: float = 1e9
    meta: dict[str, Any] = field(default_factory=dict)

    def features(self, texts: list[str], reactive: np.ndarray | None = None) -> np.ndarray:
        import numpy as np

        x = self.featurizer.transform(texts)
        if self.reactive:
            if reactive is None:
                raise ValueError("this predictor is reactive: it needs the SLM's first samples' features")
            x = np.hstack([x, reactive])
        return (x - self.mean) / self.scale

    def p_need(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return 1.0 / (1.0 + np.exp(-(x @ self.clf_coef + self.clf_intercept)))

    def n_hat(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.maximum(np.expm1(x @ self.reg_coef + self.reg_intercept), 1.0)

    def decide(self, x: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Hint tokens per row: 0 (no hint), k, or FULL."""
        return decisions(self.p_need(x), self.n_hat(x), self.threshold if threshold is None else threshold,
                         self.full_above)

    # -- persistence ----------------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        import numpy as np

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale, "clf_coef": self.clf_coef, "reg_coef": self.reg_coef}
        if self.featurizer.idf is not None:
            arrays["idf"] = self.featurizer.idf
        np.savez(path / "arrays.npz", **arrays)  # type: ignore[arg-type]
        spec = {"format": FORMAT, "featurizer": self.featurizer.spec(), "reactive": self.reactive,
                "reactive_features": list(REACTIVE_NAMES) if self.reactive else [],
                "clf_intercept": self.clf_intercept, "reg_intercept": self.reg_intercept,
                "threshold": self.threshold, "full_above": self.full_above, "meta": self.meta}
        (path / "model.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=float) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> HintPredictor:
        import numpy as np

        path = Path(path)
        if not (path / "model.json").exists():
            raise FileNotFoundError(f"no hint predictor at {path} (expected model.json + arrays.npz; "
                                    f"train one with `python -m shepherd_bench.predictor train`)")
        spec = json.loads((path / "model.json").read_text())
        if spec.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        f = spec["featurizer"]
        feat = Featurizer(kind=f["kind"], n_features=int(f["n_features"]), ngram_max=int(f["ngram_max"]),
                          idf=arrays.get("idf"))
        return cls(feat, bool(spec["reactive"]), arrays["mean"], arrays["scale"], arrays["clf_coef"],
                   float(spec["clf_intercept"]), arrays["reg_coef"], float(spec["reg_intercept"]),
                   float(spec["threshold"]), float(spec["full_above"]), dict(spec.get("meta", {})))


def decisions(p_need: np.ndarray, n_hat: np.ndarray, threshold: float, full_above: float) -> np.ndarray:
    import numpy as np

    k = np.ceil(n_hat).astype(np.int64)
    k = np.where(k >= full_above, FULL, k)
    return np.where(p_need >= threshold, k, 0)


def data_hash(texts: list[str], n_star: list[int]) -> str:
    h = hashlib.sha256()
    for t, n in zip(texts, n_star, strict=True):
        h.update(t.encode())
        h.update(b"\0%d\n" % n)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TrainOptions:
    featurizer: str = "auto"
    reactive: bool = False
    C: float = 10.0
    huber_epsilon: float = 1.35
    huber_alpha: float = 1.0
    threshold: float = 0.5
    full_fraction: float = 0.9  # hints of >= full_fraction x median LLM answer length become full calls


def train(texts: list[str], n_star: list[int], llm_lengths: list[int], options: TrainOptions = TrainOptions(),
          reactive: np.ndarray | None = None) -> HintPredictor:
    """Fit both stages. ``n_star[i] = 0`` means no hint needed."""
    import numpy as np

    feat = choose_featurizer(options.featurizer).fit(texts)
    x = feat.transform(texts)
    if options.reactive:
        if reactive is None:
            raise ValueError("reactive training needs the SLM samples' features (grid --samples 3)")
        x = np.hstack([x, reactive])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    if feat.kind == "hashed-tfidf":  # sparse l2-normalised n-grams stay as they are; only dense stats scaled
        mean[: feat.n_features], scale[: feat.n_features] = 0.0, 1.0
    z = (x - mean) / scale
    y = np.asarray(n_star) > 0
    clf_coef, clf_b = _fit_stage1(z, y, options.C)
    reg_coef, reg_b = _fit_stage2(z[y], np.log1p(np.asarray(n_star, dtype=float)[y]), options)
    full_above = options.full_fraction * float(np.median(llm_lengths)) if llm_lengths else 1e9
    meta = {"n_train": len(texts), "positives": int(y.sum()), "train_hash": data_hash(texts, list(n_star)),
            "featurizer_used": feat.kind, "options": options.__dict__}
    return HintPredictor(feat, options.reactive, mean, scale, clf_coef, clf_b, reg_coef, reg_b,
                         options.threshold, max(full_above, 1.0), meta)


def _fit_stage1(z: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():  # one class: a constant model
        p = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        return np.zeros(z.shape[1]), float(np.log(p / (1 - p)))
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    clf.fit(z, y)
    return clf.coef_.ravel().astype(np.float64), float(clf.intercept_[0])


def _fit_stage2(z: np.ndarray, t: np.ndarray, options: TrainOptions) -> tuple[np.ndarray, float]:
    import numpy as np
    from sklearn.linear_model import HuberRegressor

    if len(t) < 3:
        return np.zeros(z.shape[1]), float(t.mean()) if len(t) else 0.0
    reg = HuberRegressor(epsilon=options.huber_epsilon, alpha=options.huber_alpha, max_iter=500)
    reg.fit(z, t)
    return reg.coef_.astype(np.float64), float(reg.intercept_)
