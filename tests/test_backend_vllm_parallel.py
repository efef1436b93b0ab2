"""vLLM's parallelism options reach its engine as given on the command line (without vllm: a stand-in
module records what ``LLM(...)`` is called with)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from shepherd_bench.backends import make_backend
from shepherd_bench.backends.vllm_backend import _ENGINES
from shepherd_bench.config import ConfigError


def test_parallel_options_are_passed_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    class LLM:
        def __init__(self, **kw: Any) -> None:
            seen.append(kw)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    monkeypatch.setattr("shepherd_bench.backends.vllm_backend._ENGINES", dict(_ENGINES))
    be = make_backend("vllm:Qwen/Qwen2.5-7B-Instruct", "small",
                      {"tensor_parallel_size": "4", "pipeline_parallel_size": "2",
                       "distributed_executor_backend": "mp"})
    be.llm()  # type: ignore[attr-defined]
    assert seen and {k: seen[0][k] for k in ("model", "tensor_parallel_size", "pipeline_parallel_size",
                                             "distributed_executor_backend", "enable_prefix_caching")} == {
        "model": "Qwen/Qwen2.5-7B-Instruct", "tensor_parallel_size": 4, "pipeline_parallel_size": 2,
        "distributed_executor_backend": "mp", "enable_prefix_caching": True}
    make_backend("vllm:m", "small", {}).llm()  # type: ignore[attr-defined]
    assert seen[1]["tensor_parallel_size"] == 1 and seen[1]["distributed_executor_backend"] is None


def test_data_parallel_is_not_an_engine_option() -> None:
    with pytest.raises(ConfigError, match="unknown vllm option"):
        make_backend("vllm:m", "small", {"data_parallel_size": "2"})
