"""The strategy registry: built-ins by dotted path, baselines and plugins through the entry-point group
``shepherd_bench.strategies`` (an external package registers a strategy without touching this repo)."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Param, Strategy, StrategyBase

GROUP = "shepherd_bench.strategies"

BUILTINS: dict[str, str] = {
    "slm": "shepherd_bench.strategies.simple:SLMOnly",
    "llm": "shepherd_bench.strategies.simple:LLMOnly",
    "shepherd": "shepherd_bench.strategies.shepherd:Shepherd",
}


def build_registry() -> Registry[type[StrategyBase]]:
    """A fresh registry: the built-ins now, entry points on first lookup."""
    reg: Registry[type[StrategyBase]] = Registry("strategy", GROUP)
    for name, target in BUILTINS.items():
        reg.register(name, target)
    return reg


REGISTRY = build_registry()


def strategy_names() -> list[str]:
    return REGISTRY.names()


def get_strategy(name: str) -> type[StrategyBase]:
    """The strategy class registered under ``name`` (raises ``UnknownName`` with a suggestion)."""
    return REGISTRY.get(name)


def make_strategy(name: str, params: dict[str, str] | None = None) -> Strategy:
    """An instance with its ``-S key=value`` parameters parsed and validated (``ParamError`` names the valid keys)."""
    cls = get_strategy(name)
    return cls(**(params or {}))


def describe_params(params: tuple[Param, ...]) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "type": p.type.__name__, "default": p.default, "help": p.help, "choices": list(p.choices)}
        for p in params
    ]


def describe_all() -> list[dict[str, Any]]:
    """For ``shepherd-bench list strategies``: name, kind, one-line summary and typed parameters."""
    out = []
    for name, cls in REGISTRY.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        out.append({
            "name": name,
            "kind": getattr(cls, "kind", ""),
            "summary": doc[0] if doc else "",
            "params": describe_params(getattr(cls, "params", ())),
        })
    return out


__all__ = ["GROUP", "REGISTRY", "build_registry", "describe_all", "get_strategy", "make_strategy", "strategy_names"]
