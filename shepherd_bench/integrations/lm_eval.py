"""Strategies as lm-eval models.

``register()`` adds the model ``shepherd-bench`` to lm-eval's registry. Model args:
``strategy=shepherd,slm=llamacpp:qwen2.5-coder-0.5b,llm=llamacpp:qwen2.5-coder-1.5b,hint_tokens=32``
(any key that is not a model/run option is a strategy parameter). Each response is a ``str`` subclass
carrying the attempt's calls and cost, so our tasks' ``process_results`` logs ``cost_usd`` and LLM token
counts with every sample. lm-eval discovers no plugin models, hence ``shepherd-bench lm-eval ...``,
which registers ours and then runs lm-eval's own CLI.
"""

from __future__ import annotations

import sys
from typing import Any

from ..backends.meter import CallRecord
from ..config import DEFAULT_LLM, DEFAULT_SLM, ModelConfig, RunConfig, default_price

MODEL_NAME = "shepherd-bench"
RUN_KEYS = {"strategy", "slm", "llm", "slm_price", "llm_price", "seed", "cache", "batch_size"}


class AttemptText(str):
    """A generation that remembers what it cost (lm-eval passes it through to ``process_results``)."""

    calls: list[CallRecord]
    cost_usd: float
    decision: dict[str, Any]

    def __new__(cls, text: str, calls: list[CallRecord], cost_usd: float, decision: dict[str, Any]) -> AttemptText:
        obj = super().__new__(cls, text)
        obj.calls, obj.cost_usd, obj.decision = calls, cost_usd, decision
        return obj

    @property
    def llm_input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls if c.role == "large")

    @property
    def llm_output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls if c.role == "large")


def _make_class() -> type:
    from lm_eval.api.model import LM

    class ShepherdLM(LM):  # type: ignore[misc]
        def __init__(self, strategy: str = "llm", slm: str = DEFAULT_SLM, llm: str = DEFAULT_LLM,
                     slm_price: str | None = None, llm_price: str | None = None, seed: int = 0,
                     cache: bool = True, batch_size: int | str = 16, **params: Any) -> None:
            super().__init__()
            from ..backends.cache import GenerationCache, default_cache_path
            from ..prices import load_prices
            from ..runner import build_models
            from ..strategies import make_strategy

            for k in ("device", "max_batch_size"):  # lm-eval's generic extras mean nothing here
                params.pop(k, None)
            self.cfg = RunConfig(
                task="lm-eval", strategy=strategy, strategy_params={k: str(v) for k, v in params.items()},
                slm=ModelConfig(slm, slm_price or default_price(slm, "small")),
                llm=ModelConfig(llm, llm_price or default_price(llm, "large")), seed=int(seed),
                batch_size=int(batch_size) if str(batch_size).isdigit() else 16,
            )
            self.strategy = make_strategy(strategy, self.cfg.strategy_params)
            prices = load_prices()
            self.large_price, self.small_price = prices.get(self.cfg.llm.price), prices.get(self.cfg.slm.price)
            cache_on = str(cache).lower() not in {"0", "false", "no"}
            self.models = build_models(self.cfg, GenerationCache(default_cache_path()) if cache_on else None)

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            return solve_instances(self, requests)

        def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
            raise NotImplementedError("shepherd-bench strategies generate; loglikelihood tasks are not supported")

        def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
            raise NotImplementedError("shepherd-bench strategies generate; loglikelihood tasks are not supported")

    return ShepherdLM


def solve_instances(lm: Any, requests: list[Any]) -> list[str]:
    """Our tasks' docs become our Queries (system + user turn, as in ``shepherd-bench run``); any other
    task's context becomes a single user turn with lm-eval's generation settings."""
    from tqdm import tqdm

    from ..prices import calls_cost
    from ..tasks.lm_eval_hooks import query_for
    from .lm_eval_queries import foreign_query

    queries = [_our_query(r, query_for(r.doc)) if _is_ours(r.doc) else foreign_query(i, r.args)
               for i, r in enumerate(requests)]
    out: list[str] = []
    step = lm.cfg.batch_size
    for s in tqdm(range(0, len(queries), step), desc=f"shepherd-bench {lm.cfg.strategy}", unit="batch"):
        for a in lm.strategy.solve(queries[s : s + step], lm.models):
            cost = calls_cost(a.calls, lm.large_price, lm.small_price)
            out.append(AttemptText("" if a.error else a.answer, a.calls, cost, a.decision))
    return out


def _our_query(request: Any, query: Any) -> Any:
    """Our task's query, with lm-eval's ``max_gen_toks`` when the user overrode it (``--gen_kwargs``)."""
    import dataclasses

    gen = request.args[1] if len(request.args) > 1 and isinstance(request.args[1], dict) else {}
    if "max_gen_toks" in gen and int(gen["max_gen_toks"]) != query.max_tokens:
        return dataclasses.replace(query, max_tokens=int(gen["max_gen_toks"]))
    return query


def _is_ours(doc: Any) -> bool:
    return isinstance(doc, dict) and {"task", "id", "prompt", "record"} <= set(doc)


_REGISTERED: list[type] = []


def register() -> type:
    """Register the ``shepherd-bench`` model with lm-eval (idempotent); returns the class."""
    if _REGISTERED:
        return _REGISTERED[0]
    from lm_eval.api.registry import register_model

    cls = register_model(MODEL_NAME)(_make_class())
    _REGISTERED.append(cls)
    return cls


def run_lm_eval_cli(argv: list[str]) -> int:
    """``shepherd-bench lm-eval [lm_eval args]``: lm_eval's CLI with our model and tasks available."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    from ..tasks.lm_eval_hooks import task_yaml_dir

    register()
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    subcommand = args[0] if args and not args[0].startswith("-") else "run"
    if subcommand in {"run", "ls", "validate"} and "--include_path" not in args:
        args += ["--include_path", str(task_yaml_dir())]
    setup_logging()
    old = sys.argv
    sys.argv = ["lm_eval", *args]
    try:
        parser = HarnessCLI()
        parser.execute(parser.parse_args())
    finally:
        sys.argv = old
    return 0
