"""Joint training of the two-stage predictor (λ * BCE + (1 - λ) * Huber on a shared layer): the exact
gradient, the known answer of the synthetic grid, persistence, and what λ at its ends means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from shepherd_bench.predictor.evaluate import cross_validate, fit, load_grid_data, predict
from shepherd_bench.predictor.model import HintPredictor, JointWeights, TrainOptions, joint_loss
from tests.test_predictor_synthetic import PRICING, write_synthetic_grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("joint") / "grid"
    return root, write_synthetic_grid(root)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_gradient_is_exact(lam: float) -> None:
    rng = np.random.default_rng(1)
    n, d, h = 12, 5, 3
    z = rng.normal(size=(n, d))
    y = np.arange(n) % 3 == 0
    t = np.where(y, rng.uniform(1, 4, n), 0.0)
    theta = rng.normal(0, 0.5, d * h + 3 * h + 2)
    loss, grad = joint_loss(theta, z, y, t, lam, h, 0.5, 0.01)  # epsilon 0.5: both Huber branches occur
    numeric = approx_fprime(theta, lambda th: joint_loss(th, z, y, t, lam, h, 0.5, 0.01)[0], 1e-6)
    assert np.allclose(grad, numeric, atol=1e-5), np.abs(grad - numeric).max()
    assert JointWeights.unflat(theta, d, h).flat() == pytest.approx(theta)


def test_lambda_ends_train_one_head_only() -> None:
    """λ = 1: the Huber head gets no gradient (beyond L2); λ = 0: the classifier head gets none."""
    rng = np.random.default_rng(2)
    n, d, h = 10, 4, 2
    z, y = rng.normal(size=(n, d)), np.arange(n) % 2 == 0
    t = np.where(y, 2.0, 0.0)
    theta = rng.normal(0, 0.5, d * h + 3 * h + 2)
    _, g1 = joint_loss(theta, z, y, t, 1.0, h, 1.35, 0.0)
    _, g0 = joint_loss(theta, z, y, t, 0.0, h, 1.35, 0.0)
    w1, w0 = JointWeights.unflat(g1, d, h), JointWeights.unflat(g0, d, h)
    assert np.allclose(w1.u, 0) and w1.v == 0 and not np.allclose(w1.a, 0)
    assert np.allclose(w0.a, 0) and w0.c == 0 and not np.allclose(w0.u, 0)


def test_joint_kfold_recovers_marker_and_length(grid: tuple[Path, dict[str, int]]) -> None:
    root, need = grid
    data = load_grid_data(root, PRICING)
    oof = cross_validate(data, TrainOptions(featurizer="hashed-tfidf", joint_lambda=0.5), folds=5)
    truth = np.array([need[q] > 0 for q in oof.index])
    assert ((oof["p_need"] >= 0.5).to_numpy() == truth).mean() >= 0.95
    pos = oof[truth]
    assert np.corrcoef(np.log1p(pos["n_hat"]), np.log1p(pos["n_star"]))[0, 1] >= 0.8


def test_joint_model_saves_and_loads(grid: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    root, _ = grid
    data = load_grid_data(root, PRICING)
    model = fit(data, TrainOptions(featurizer="hashed-tfidf", joint_lambda=0.7, hidden=8, seed=3))
    assert model.meta["joint"] and model.trunk_w is not None and model.trunk_w.shape[1] == 8
    again = HintPredictor.load(model.save(tmp_path / "joint"))
    assert again.trunk_w is not None and np.array_equal(again.trunk_w, model.trunk_w)
    (p1, k1), (p2, k2) = predict(model, data), predict(again, data)
    assert np.array_equal(p1, p2) and np.array_equal(k1, k2)
    separate = fit(data, TrainOptions(featurizer="hashed-tfidf"))
    assert separate.trunk_w is None and not separate.meta["joint"]
    with pytest.raises(ValueError, match="joint_lambda"):
        fit(data, TrainOptions(featurizer="hashed-tfidf", joint_lambda=1.5))
