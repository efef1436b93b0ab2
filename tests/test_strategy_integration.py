"""Strategies on a real CPU model (Qwen2.5-Coder-0.5B on llama.cpp as both SLM and LLM: the mechanics,
not the accuracy). Skips when the model file or the backend is absent."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd_bench.backends.base import Message
from shepherd_bench.backends.meter import MeteredBackend
from shepherd_bench.strategies import make_strategy
from shepherd_bench.strategies.base import ModelPair, Query

pytestmark = pytest.mark.slow  # ~1-3 min on a shared 2-core machine

OPTIONS = {"n_parallel": 2, "n_ctx_per_slot": 1024, "progress": False}
QUERIES = [
    Query("add", (Message("system", "You are an expert Python programmer."),
                  Message("user", "Write a Python function add(a, b) that returns a + b.")), 32, kind="code"),
    Query("sum", (Message("system", "You are a careful math solver."),
                  Message("user", "Tom has 3 apples and buys 4 more. How many apples? End with '#### N'.")), 32,
          kind="math"),
]


@pytest.fixture(scope="module")
def models() -> ModelPair:
    backends = pytest.importorskip("shepherd_bench.backends")
    model_mod = pytest.importorskip("shepherd_bench.backends.models")
    small = model_mod.KNOWN_MODELS["qwen2.5-coder-0.5b"]
    if not (model_mod.models_dir() / small.filename).is_file():
        pytest.skip(f"{small.filename} not in {model_mod.models_dir()}")
    pytest.importorskip("xllamacpp")
    b: Any = backends.make_backend("llamacpp:qwen2.5-coder-0.5b", "small", OPTIONS)
    return ModelPair(small=MeteredBackend(b, "small"), large=MeteredBackend(b, "large"))


def test_shepherd_prefill_pays_at_most_k_llm_tokens(models: ModelPair) -> None:
    attempts = make_strategy("shepherd", {"hint_tokens": "8"}).solve(QUERIES, models)
    for a in attempts:
        assert a.error is None, a.error
        llm = [c for c in a.calls if c.role == "large"]
        assert len(llm) == 1 and 0 < llm[0].output_tokens <= 8
        if not a.decision["llm_finished"]:
            assert [c.purpose for c in a.calls] == ["hint", "continue"] and len(a.answer) > 0


def test_shepherd_in_prompt_and_cascade_logprob_run(models: ModelPair) -> None:
    (a, _) = make_strategy("shepherd", {"hint_tokens": "8", "mode": "in_prompt"}).solve(QUERIES, models)
    assert a.error is None and a.decision["mode"] == "in_prompt"
    attempts = make_strategy("cascade-logprob", {"threshold": "-100"}).solve(QUERIES, models)
    assert all(a.decision["deferred"] is False and a.decision["score"] <= 0 for a in attempts)


def test_adaptive_shepherd_checks_docstring_examples_on_the_real_model(models: ModelPair) -> None:
    """Code with a doctest example: each round's samples run on it in the real sandbox."""
    prompt = 'def add(a, b):\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n'
    q = Query("add-doc", (Message("system", "You are an expert Python programmer."),
                          Message("user", f"Complete this function in a ```python block.\n{prompt}")), 48,
              kind="code", public_examples=">>> add(2, 3)\n5")
    (a,) = make_strategy("shepherd", {"policy": "adaptive", "steps": "0,8", "samples": "2"}).solve([q], models)
    assert a.error is None, a.error
    rounds = a.decision["rounds"]
    assert rounds and all(r["check"] == "examples" and r["examples"] == 1 for r in rounds)
    assert a.decision["check_passed"] == (rounds[-1]["passing"] > 0)
