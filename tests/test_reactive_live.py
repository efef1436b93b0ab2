"""A reactive hint predictor live, on the real 0.5B model (CPU): trained on a tiny grid, run through the
runner with -S policy=predicted. Its first samples are the very requests the grid made at level 0 (served
from the shared generation cache), its features equal ``reactive_table`` on the grid, they are recorded
and paid, and a no-hint query answers with the grid's sample 0 without another SLM call."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from shepherd_bench.config import ModelConfig, RunConfig
from shepherd_bench.predictor.evaluate import fit, load_grid_data, predict
from shepherd_bench.predictor.features import REACTIVE_NAMES
from shepherd_bench.predictor.model import TrainOptions
from shepherd_bench.predictor.reactive import reactive_table
from shepherd_bench.prices import load_prices
from shepherd_bench.research.grid import GridConfig, GridSpec, execute_grid, load_grid
from shepherd_bench.runner import execute

SMALL = "qwen2.5-coder-0.5b"


def test_reactive_predictor_live_on_a_real_model(data_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e .[cpu])")
    from shepherd_bench.tasks.gsm8k import GSM8K

    monkeypatch.setattr(GSM8K, "max_tokens", 24)  # short answers keep the CPU run small
    # plays both roles; one thread: llama.cpp threads spin badly on a busy 2-core machine
    model_cfg = ModelConfig(f"llamacpp:{SMALL}", "free", {"n_ctx_per_slot": 1024, "n_threads": 1})
    cache = tmp_path / "generations.sqlite"
    spec = GridSpec(levels=(0.0,), kind="tokens", samples=3, temperature=0.7, seed=0)
    gcfg = GridConfig("gsm8k", model_cfg, model_cfg, spec, limit=2, data_dir=str(data_dir))
    root, _ = execute_grid(gcfg, out=tmp_path / "grid", cache_path=cache, progress=False)

    data = load_grid_data(root)
    data.n_star = [8, 0]  # stipulated labels: the first query needs an 8-token hint, the second none
    model = fit(data, TrainOptions(featurizer="hashed-tfidf", reactive=True))
    assert model.meta["reactive_sampling"] == {"samples": 3, "temperature": 0.7, "grid_seed": 0}
    p, _ = predict(model, data)
    assert p[0] > p[1]
    model.threshold = float(p[0] + p[1]) / 2
    path = model.save(tmp_path / "model")

    cfg = RunConfig("gsm8k", "shepherd", {"policy": "predicted", "predictor": str(path)}, model_cfg, model_cfg,
                    limit=2, seed=0, data_dir=str(data_dir))
    res = execute(cfg, prices=load_prices(), out=tmp_path / "live", cache_path=cache, progress=False)
    recs = {r["query_id"]: r for r in map(json.loads, (res.run_dir / "samples.jsonl").read_text().splitlines())}
    assert list(recs) == data.query_ids

    rows = load_grid(root)
    table = reactive_table(rows)
    first = rows[(rows["level"] == 0) & (rows["sample"] == 0)].set_index("query_id")["text"]
    paid = 0
    for qid, rec in recs.items():
        assert rec["error"] is None
        samples = rec["calls"][:3]
        assert [(c["role"], c["purpose"]) for c in samples] == [("small", "sample")] * 3
        assert all(c["cached"] for c in samples)  # byte-for-byte the grid's level-0 requests
        d = rec["decision"]
        assert d["reactive_features"] == {k: table.loc[qid, k] for k in REACTIVE_NAMES}
        tokens = sum(c["input_tokens"] + c["output_tokens"] for c in samples)
        assert d["slm_sample_tokens"] == tokens == table.loc[qid, "slm_sample_tokens"]
        paid += tokens
    hinted, plain = recs[data.query_ids[0]], recs[data.query_ids[1]]
    assert hinted["decision"]["hint_target"] != 0 and hinted["calls"][3]["role"] == "large"
    assert not hinted["calls"][3]["cached"]  # generated live
    assert plain["decision"]["hint_target"] == 0 and plain["decision"]["answer_sample"] == 0
    assert len(plain["calls"]) == 3 and plain["answer"] == first[plain["query_id"]]
    assert res.summary["slm_input_tokens"] + res.summary["slm_output_tokens"] >= paid
