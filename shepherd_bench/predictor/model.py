"""The two-stage hint predictor: is a hint needed?  and if so, how long (log(1 + n*), Huber loss)?

Stage 1 is a class-weighted logistic regression (positives, queries needing a hint, are the minority);
stage 2 a Huber regression of ``log(1 + n*)`` on the queries that need one, ``n*`` the smallest successful
hint in LLM tokens. A query is hinted when ``p(need) >= threshold``; a predicted hint of at least
``full_above`` tokens becomes a full LLM call. Stage 2 has a second variant, ``stage2="classes"``: a
regularised multinomial logistic regression over the grid's hint levels with "full" (queries only the
whole answer solves) as its own class, so it can say "full" where the regression, pulled toward the many
small hints, cannot; ``stage2="auto"`` (default) picks the variant with the lower inner-cross-validated
hint loss (a sufficient hint pays its tokens, an insufficient one those plus the whole answer).

Joint training (``TrainOptions.joint_lambda = λ``) fits both heads on one shared hidden layer
(``tanh``) by minimising ``λ * BCE + (1 - λ) * Huber`` (class-weighted BCE over all queries, Huber over
those needing a hint, L2 on the weights) with L-BFGS and exact gradients; λ = 1 trains the classifier
alone, λ = 0 the regression alone. A model is saved as JSON (spec, scalars, training-data hash) plus an
``.npz`` of arrays (the shared layer too, when joint), loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .features import REACTIVE_NAMES, Featurizer, choose_featurizer

if TYPE_CHECKING:
    import numpy as np

FULL = -1
FORMAT = "shepherd-bench hint predictor v1"
FULL_CLASS = 1e9  # the "full answer" class's size: always at or above full_above, so it decides FULL
STAGE2 = ("huber", "classes", "auto")


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
    trunk_w: np.ndarray | None = None  # the shared hidden layer of a jointly trained model
    trunk_b: np.ndarray | None = None
    # stage 2 as classes (``TrainOptions.stage2 = "classes"``): multinomial logistic regression over the
    # grid's hint levels and "full" (FULL_CLASS); None: the Huber regression above
    cls_coef: np.ndarray | None = None  # [d, C]
    cls_intercept: np.ndarray | None = None  # [C]
    cls_values: np.ndarray | None = None  # [C] hint tokens of each class

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return x if self.trunk_w is None else np.tanh(x @ self.trunk_w + self.trunk_b)

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

        return 1.0 / (1.0 + np.exp(-(self._hidden(x) @ self.clf_coef + self.clf_intercept)))

    def n_hat(self, x: np.ndarray) -> np.ndarray:

        h = self._hidden(x)
        if self.cls_coef is not None and self.cls_intercept is not None and self.cls_values is not None:
            return classes_n_hat(h, self.cls_coef, self.cls_intercept, self.cls_values)
        return huber_n_hat(h, self.reg_coef, self.reg_intercept)

    def decide(self, x: np.ndarray, threshold: float | None = None, full_threshold: float = math.inf) -> np.ndarray:
        """Hint tokens per row: 0 (no hint), k, or FULL (see :func:`decisions`)."""
        return decisions(self.p_need(x), self.n_hat(x), self.threshold if threshold is None else threshold,
                         self.full_above, full_threshold)

    # -- persistence ----------------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        import numpy as np

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale, "clf_coef": self.clf_coef, "reg_coef": self.reg_coef}
        if self.featurizer.idf is not None:
            arrays["idf"] = self.featurizer.idf
        if self.trunk_w is not None and self.trunk_b is not None:
            arrays["trunk_w"], arrays["trunk_b"] = self.trunk_w, self.trunk_b
        if self.cls_coef is not None and self.cls_intercept is not None and self.cls_values is not None:
            arrays.update(cls_coef=self.cls_coef, cls_intercept=self.cls_intercept, cls_values=self.cls_values)
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
                   float(spec["threshold"]), float(spec["full_above"]), dict(spec.get("meta", {})),
                   arrays.get("trunk_w"), arrays.get("trunk_b"), arrays.get("cls_coef"),
                   arrays.get("cls_intercept"), arrays.get("cls_values"))


def decisions(p_need: np.ndarray, n_hat: np.ndarray, threshold: float, full_above: float,
              full_threshold: float = math.inf) -> np.ndarray:
    """Hint tokens per query from the two stages and two knobs: no hint below ``threshold`` on p(need);
    the full LLM answer at or above ``full_threshold`` (the second knob; infinite: never by p(need)) or
    where ``ceil(n_hat)`` reaches ``full_above``; else ``ceil(n_hat)`` tokens. ``threshold =
    full_threshold = 0`` is LLM-only, ``threshold > 1`` SLM-only."""
    import numpy as np

    k = np.ceil(n_hat).astype(np.int64)
    k = np.where((k >= full_above) | (p_need >= full_threshold), FULL, k)
    return np.where(p_need >= threshold, k, 0)


def data_hash(texts: list[str], n_star: list[int]) -> str:
    h = hashlib.sha256()
    for t, n in zip(texts, n_star, strict=True):
        h.update(t.encode())
        h.update(b"\0%d\n" % n)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TrainOptions:
    # hashed TF-IDF n-grams + text statistics: decides in under a millisecond (benchmarks/
    # bench_predictor.py) and matched MiniLM on the HumanEval grid; "minilm" / "auto" (MiniLM when it
    # loads here) are the alternatives
    featurizer: str = "hashed-tfidf"
    reactive: bool = False
    C: float = 10.0
    huber_epsilon: float = 1.35
    huber_alpha: float = 1.0
    threshold: float = 0.5
    full_fraction: float = 0.9  # hints of >= full_fraction x median LLM answer length become full calls
    joint_lambda: float | None = None  # train both heads jointly on a shared layer: λ BCE + (1 - λ) Huber
    hidden: int = 16  # width of the shared layer (joint training)
    joint_max_iter: int = 300  # L-BFGS iterations (joint training)
    seed: int = 0
    # stage 2: "huber" (the paper's regression of log(1 + n*)), "classes" (multinomial logistic
    # regression over the grid's levels with "full" as its own class), "auto" (the one with the lower
    # inner-cross-validated hint loss on the training queries, both losses kept in meta)
    stage2: str = "auto"
    classes_C: float = 1.0  # L2 strength of the classes variant (small data: more dims than positives)


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
    t = np.log1p(np.asarray(n_star, dtype=float))
    trunk: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None)
    if options.joint_lambda is not None and y.any() and not y.all():
        if not 0.0 <= options.joint_lambda <= 1.0:
            raise ValueError(f"joint_lambda must lie in [0, 1], got {options.joint_lambda}")
        jw = fit_joint(z, y, t, options)
        trunk, clf_coef, clf_b, reg_coef, reg_b = (jw.w, jw.b), jw.a, jw.c, jw.u, jw.v
    else:  # two separate linear stages (also when one class only: joint training needs both)
        clf_coef, clf_b = _fit_stage1(z, y, options.C)
        reg_coef, reg_b = _fit_stage2(z[y], t[y], options)
    full_above = options.full_fraction * float(np.median(llm_lengths)) if llm_lengths else 1e9
    meta: dict[str, Any] = {"n_train": len(texts), "positives": int(y.sum()),
                            "train_hash": data_hash(texts, list(n_star)), "featurizer_used": feat.kind,
                            "options": options.__dict__, "joint": trunk[0] is not None}
    if options.stage2 not in STAGE2:
        raise ValueError(f"stage2 must be one of {', '.join(STAGE2)}, got {options.stage2!r}")
    classes = class_labels(n_star, llm_lengths)
    stage2 = options.stage2 if trunk[0] is None else "huber"  # the joint model's head is the regression
    if stage2 == "auto":
        losses = {v: stage2_cv_loss(z[y], t[y], classes[y], np.asarray(llm_lengths, float)[y], v, options,
                                    max(full_above, 1.0)) for v in ("huber", "classes")}
        meta["stage2_cv_loss"] = losses
        stage2 = min(losses, key=lambda v: (losses[v], v != "huber"))  # ties: the paper's Huber
    meta["stage2"] = stage2
    cls = _fit_classes(z[y], classes[y], options.classes_C) if stage2 == "classes" else (None, None, None)
    return HintPredictor(feat, options.reactive, mean, scale, clf_coef, clf_b, reg_coef, reg_b,
                         options.threshold, max(full_above, 1.0), meta, trunk[0], trunk[1], *cls)


def class_labels(n_star: list[int], llm_lengths: list[int]) -> np.ndarray:
    """Stage-2 class of each query: its n* (a grid level) or FULL_CLASS where only the full answer works
    (n* is then the whole answer's length); 0 for queries needing no hint."""
    import numpy as np

    n = np.asarray(n_star, dtype=np.float64)
    lengths = np.asarray(llm_lengths, dtype=np.float64)
    return np.where((n > 0) & (n >= lengths), FULL_CLASS, n)


def _fit_classes(z: np.ndarray, classes: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    values = np.unique(classes)
    if len(values) < 2:  # one class (or none): a constant prediction
        v = values if len(values) else np.array([1.0])
        return np.zeros((z.shape[1], 1)), np.zeros(1), v.astype(np.float64)
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(z, classes)
    coef, icpt = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
    if len(values) == 2:  # sklearn keeps one row for two classes: P(second) = sigmoid(w x + b)
        coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
    return coef.T, icpt, clf.classes_.astype(np.float64)


def huber_n_hat(h: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """Hint tokens from the regression of log(1 + n*) (at least 1)."""
    import numpy as np

    return np.maximum(np.expm1(h @ coef + intercept), 1.0)


def classes_n_hat(h: np.ndarray, coef: np.ndarray, intercept: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Hint tokens of the most likely class (FULL_CLASS for "full")."""
    import numpy as np

    return np.asarray(values[np.argmax(h @ coef + intercept, axis=1)], dtype=np.float64)


def hint_loss(k_hat: np.ndarray, classes: np.ndarray, lengths: np.ndarray, full_above: float = math.inf) -> float:
    """Mean cost, in LLM tokens, of a predicted hint size on queries that need one: a sufficient hint
    pays its own tokens; an insufficient one pays them and then the whole answer (what a deferral to the
    LLM costs). The full class needs the full answer; a prediction at or above ``full_above`` is the full
    answer (as ``decisions`` makes it)."""
    import numpy as np

    k_hat = np.where(k_hat >= full_above, FULL_CLASS, k_hat)
    need = np.where(classes >= FULL_CLASS, lengths, classes)
    paid = np.minimum(k_hat, lengths)
    ok = (k_hat >= need) | (k_hat >= FULL_CLASS)
    return float(np.mean(np.where(ok, paid, paid + lengths)))


def stage2_cv_loss(z: np.ndarray, t: np.ndarray, classes: np.ndarray, lengths: np.ndarray, variant: str,
                   options: TrainOptions, full_above: float = math.inf, folds: int = 3) -> float:
    """Inner k-fold hint loss of one stage-2 variant on the training positives (``inf`` when too few)."""
    import numpy as np
    from sklearn.model_selection import KFold

    n = len(t)
    if n < 2 * folds:
        return math.inf
    k_hat = np.zeros(n)
    for tr, te in KFold(n_splits=folds, shuffle=True, random_state=options.seed).split(np.arange(n)):
        if variant == "huber":
            k_hat[te] = np.ceil(huber_n_hat(z[te], *_fit_stage2(z[tr], t[tr], options)))
        else:
            k_hat[te] = classes_n_hat(z[te], *_fit_classes(z[tr], classes[tr], options.classes_C))
    return hint_loss(k_hat, classes, lengths, full_above)


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


@dataclass
class JointWeights:
    """Shared layer ``h = tanh(z W + b)``; heads ``logit = h a + c`` and ``log(1 + n) = h u + v``."""

    w: np.ndarray
    b: np.ndarray
    a: np.ndarray
    c: float
    u: np.ndarray
    v: float

    def flat(self) -> np.ndarray:
        import numpy as np

        return np.concatenate([self.w.ravel(), self.b, self.a, [self.c], self.u, [self.v]])

    @classmethod
    def unflat(cls, theta: np.ndarray, d: int, h: int) -> JointWeights:
        w, rest = theta[: d * h].reshape(d, h), theta[d * h :]
        return cls(w, rest[:h], rest[h : 2 * h], float(rest[2 * h]), rest[2 * h + 1 : 3 * h + 1], float(rest[3 * h + 1]))


def joint_loss(theta: np.ndarray, z: np.ndarray, y: np.ndarray, t: np.ndarray, lam: float, hidden: int,
               epsilon: float, alpha: float) -> tuple[float, np.ndarray]:
    """``λ * class-weighted BCE (mean over all) + (1 - λ) * Huber (mean over positives) + α/2 |weights|²``
    and its exact gradient in ``theta`` (``JointWeights.flat`` layout)."""
    import numpy as np

    n, d = z.shape
    p_w = JointWeights.unflat(theta, d, hidden)
    yf = y.astype(float)
    n_pos = max(float(yf.sum()), 1.0)
    n_neg = max(float(n - yf.sum()), 1.0)
    cw = np.where(y, n / (2 * n_pos), n / (2 * n_neg))  # scikit-learn's class_weight="balanced"
    hid = np.tanh(z @ p_w.w + p_w.b)
    s = hid @ p_w.a + p_w.c
    bce = np.logaddexp(0.0, s) - yf * s  # -log p(y) with p = sigmoid(s), stable
    r = np.where(y, hid @ p_w.u + p_w.v - t, 0.0)
    absr = np.abs(r)
    hub = np.where(absr <= epsilon, 0.5 * r * r, epsilon * (absr - 0.5 * epsilon))
    reg = 0.5 * alpha * (float((p_w.w**2).sum()) + float(p_w.a @ p_w.a) + float(p_w.u @ p_w.u))
    loss = lam * float((cw * bce).sum()) / n + (1 - lam) * float(hub[y].sum()) / n_pos + reg
    ds = lam * cw * (1.0 / (1.0 + np.exp(-s)) - yf) / n
    dr = (1 - lam) * np.where(y, np.clip(r, -epsilon, epsilon), 0.0) / n_pos
    dhid = np.outer(ds, p_w.a) + np.outer(dr, p_w.u)
    da_pre = dhid * (1.0 - hid * hid)
    grad = JointWeights(z.T @ da_pre + alpha * p_w.w, da_pre.sum(axis=0), hid.T @ ds + alpha * p_w.a,
                        float(ds.sum()), hid.T @ dr + alpha * p_w.u, float(dr.sum()))
    return loss, grad.flat()


def fit_joint(z: np.ndarray, y: np.ndarray, t: np.ndarray, options: TrainOptions) -> JointWeights:
    """Minimise :func:`joint_loss` with L-BFGS from a seeded small random start."""
    import numpy as np
    from scipy.optimize import minimize

    lam = float(options.joint_lambda if options.joint_lambda is not None else 0.5)
    n, d = z.shape
    h = max(1, options.hidden)
    rng = np.random.default_rng(options.seed)
    start = JointWeights(rng.normal(0.0, 1.0 / np.sqrt(max(d, 1)), (d, h)), np.zeros(h),
                         rng.normal(0.0, 1.0 / np.sqrt(h), h), 0.0, rng.normal(0.0, 1.0 / np.sqrt(h), h),
                         float(t[y].mean()) if y.any() else 0.0)
    alpha = 1.0 / (options.C * n)  # the classifier's C, as an L2 strength per example
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small matrices: BLAS threads only contend (badly so on a busy machine)
        res = minimize(joint_loss, start.flat(), args=(z, y, t, lam, h, options.huber_epsilon, alpha),
                       jac=True, method="L-BFGS-B", options={"maxiter": options.joint_max_iter})
    return JointWeights.unflat(res.x, d, h)
