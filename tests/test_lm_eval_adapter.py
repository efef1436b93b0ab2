"""Our strategies as an lm-eval model: lm-eval's own evaluator runs our task with our adapter on a real
model, and every logged sample carries its cost."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shepherd_bench.backends.meter import CallRecord
from shepherd_bench.integrations.lm_eval import MODEL_NAME, AttemptText, register
from shepherd_bench.prices import load_prices
from shepherd_bench.tasks.lm_eval_hooks import task_yaml_dir

SLM = "llamacpp:qwen2.5-coder-0.5b"


def test_attempt_text_is_a_str_that_remembers_its_cost() -> None:
    calls = [CallRecord("large", 100, 0, 20, 0.1, False), CallRecord("small", 50, 0, 30, 0.1, False)]
    t = AttemptText("#### 4", calls, 1.5e-5, {"model": "large"})
    assert t == "#### 4" and isinstance(t, str)
    assert (t.llm_input_tokens, t.llm_output_tokens, t.cost_usd) == (100, 20, 1.5e-5)


def test_registered_with_lm_eval() -> None:
    from lm_eval.api.registry import get_model

    cls = register()
    assert get_model(MODEL_NAME) is cls
    assert register() is cls  # idempotent


def test_lm_eval_evaluator_runs_our_task_with_our_adapter(data_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real evaluator, the real 0.5B model as the LLM, our GSM8K definition from tasks/."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("SHEPHERD_BENCH_CACHE", str(tmp_path / "cache"))
    register()
    tm = TaskManager(include_path=str(task_yaml_dir()), include_defaults=False,
                     metadata={"data_dir": str(data_dir)})
    out = lm_eval.simple_evaluate(
        model=MODEL_NAME, model_args=f"strategy=llm,llm={SLM},slm={SLM}", tasks=["gsm8k"], task_manager=tm,
        limit=2, log_samples=True, gen_kwargs="max_gen_toks=96",
    )
    samples = out["samples"]["gsm8k"]
    assert len(samples) == 2
    price = load_prices().get("embedded-llm")
    for s in samples:
        resp = s["resps"][0][0]
        assert s["acc"] in (0.0, 1.0)
        assert s["llm_input_tokens"] > 0 and s["llm_output_tokens"] > 0
        expected = price.cost(int(s["llm_input_tokens"]), 0, int(s["llm_output_tokens"]))
        assert s["cost_usd"] == pytest.approx(expected, rel=0.05)  # cached-input share at its own rate
        assert isinstance(resp, str) and resp
    res = out["results"]["gsm8k"]
    assert not math.isnan(res["cost_usd,none"]) and res["cost_usd,none"] > 0


@pytest.mark.slow
def test_shepherd_bench_lm_eval_wrapper_runs_lm_eval_cli(data_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SHEPHERD_BENCH_DATA": str(data_dir), "SHEPHERD_BENCH_CACHE": str(tmp_path / "c")}
    cmd = [sys.executable, "-m", "shepherd_bench.cli", "lm-eval", "run", "--model", MODEL_NAME,
           "--model_args", f"strategy=slm,slm={SLM},llm={SLM}", "--tasks", "humaneval", "--limit", "1",
           "--output_path", str(tmp_path / "out"), "--log_samples"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    logged = list((tmp_path / "out").rglob("samples_humaneval*.jsonl"))
    assert logged and '"cost_usd"' in logged[0].read_text()
