"""Argument helpers shared by the CLI and the commands that live beside their library (grid, replay):
the model and data options and their translation to config objects. Nothing here imports the CLI."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .config import DEFAULT_LLM, DEFAULT_SLM, ConfigError, ModelConfig, default_price, parse_kv


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--slm", default=DEFAULT_SLM, help=f"small model backend:model (default {DEFAULT_SLM})")
    g.add_argument("--llm", default=DEFAULT_LLM, help=f"large model backend:model (default {DEFAULT_LLM})")
    g.add_argument("--slm-price", help="price-table name for SLM tokens (default: free for local models)")
    g.add_argument("--llm-price", help="price-table name for LLM tokens (default: the model name, "
                   "NAME@batch for openai-batch; local models are priced as Groq's Llama-3.3-70B)")
    g.add_argument("--slm-opt", action="append", metavar="KEY=VALUE", help="SLM backend option (repeatable)")
    g.add_argument("--llm-opt", action="append", metavar="KEY=VALUE",
                   help="LLM backend option, e.g. base_url=http://host/v1 api_key_env=MY_KEY concurrency=32; "
                   "openai-batch also takes poll_s=15 max_poll_s=300 state_dir=DIR max_requests=50000 and "
                   "command='vllm run-batch' (docs/BATCH.md)")
    g.add_argument("--prices", type=Path, help="price table JSON (default: leaderboard/prices.json)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=os.environ.get("SHEPHERD_BENCH_DATA"),
                   help="local benchmark data (<dir>/mbpp/mbpp.jsonl, <dir>/gsm8k/test.jsonl, ...); "
                   "env SHEPHERD_BENCH_DATA; default: the public copy via `datasets`")


def model_config(spec: str, price: str | None, opts: list[str] | None, role: str) -> ModelConfig:
    if ":" not in spec:
        raise ConfigError(f"model spec {spec!r} must be backend:model, e.g. llamacpp:qwen2.5-coder-0.5b "
                          f"or openai:gpt-4o-mini (shepherd-bench list backends)")
    options: dict[str, Any] = dict(parse_kv(opts, "--slm-opt" if role == "small" else "--llm-opt"))
    return ModelConfig(spec=spec, price=price or default_price(spec, role), options=options)
