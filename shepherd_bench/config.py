"""Typed run configuration: the one place where command-line strings become values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

DEFAULT_SLM = "llamacpp:qwen2.5-coder-0.5b"
DEFAULT_LLM = "llamacpp:qwen2.5-coder-1.5b"


class ConfigError(UserError, ValueError):
    """A user error in the configuration; the message names the fix."""


@dataclass(frozen=True)
class ModelConfig:
    spec: str  # "<backend>:<model>", e.g. "llamacpp:qwen2.5-coder-0.5b" or "openai:gpt-4o-mini"
    price: str  # a name in the price table
    options: dict[str, Any] = field(default_factory=dict)  # base_url, api_key_env, concurrency, ...

    @property
    def backend(self) -> str:
        return self.spec.split(":", 1)[0]


@dataclass(frozen=True)
class RunConfig:
    task: str
    strategy: str
    strategy_params: dict[str, str]
    slm: ModelConfig
    llm: ModelConfig
    limit: int | None = None
    seed: int = 0
    data_dir: str | None = None
    batch_size: int = 16
    workers: int | None = None  # sandbox workers
    error_policy: str = "wrong"  # errors count as wrong ("wrong") or are excluded ("exclude")

    def measured(self) -> dict[str, Any]:
        """The fields that change what is measured: they name the run folder and guard resume."""
        d = asdict(self)
        for k in ("batch_size", "workers", "data_dir"):
            d.pop(k)
        d["slm"].pop("price")
        d["llm"].pop("price")
        for m in ("slm", "llm"):  # connection details do not change the measurement; keys never stored
            d[m]["options"] = {k: v for k, v in d[m]["options"].items() if k in ("base_url",)}
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.measured(), sort_keys=True).encode()).hexdigest()[:10]

    def default_run_dir(self, root: Path = Path("runs")) -> Path:
        params = "".join(f"-{k}{v}" for k, v in sorted(self.strategy_params.items()))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in params)
        lim = f"-n{self.limit}" if self.limit else ""
        return root / f"{self.task}-{self.strategy}{safe}{lim}-{self.fingerprint()}"


def parse_kv(pairs: list[str] | None, flag: str = "-S") -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"{flag} expects key=value, got {p!r} (e.g. {flag} hint_tokens=32)")
        out[k.strip()] = v.strip()
    return out


def default_price(spec: str, role: str) -> str:
    """The price-table name a model is billed under: the model name, in the tier its backend calls
    (``openai-batch:gpt-4o-mini`` -> ``gpt-4o-mini@batch``); local models as the embedded pair."""
    from .backends import PRICE_TIERS

    backend, _, model = spec.partition(":")
    if backend == "llamacpp" or backend == "vllm":
        return "embedded-llm" if role == "large" else "embedded-slm"
    tier = PRICE_TIERS.get(backend)
    return f"{model}@{tier}" if tier else model
