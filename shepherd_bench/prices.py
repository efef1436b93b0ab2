"""Dated price table (``leaderboard/prices.json``) and the one cost formula.

Cost of a call = (input - cached_input) * p_in + cached_input * p_cached + output * p_out, per token,
where ``input`` is the prompt token count as the API reports it (cached tokens included, as OpenAI's
``prompt_tokens`` does). Costs are computed at analysis time from stored token counts, so a price change
needs no re-run. A call served from shepherd-bench's local cache is priced as the API call it replays:
the cost is the strategy's, not the re-run's.

A model's entry may hold other tiers of the same provider as nested entries (``"batch": {"input": ...,
"cached_input": ..., "output": ...}``); ``NAME@TIER`` names one (``gpt-4o-mini@batch``), and a backend
that calls a tier (``openai-batch``) defaults to it. A tier the table lacks is an error, never the
standard price and never $0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends.meter import CallRecord
from .errors import UserError


class PriceError(UserError, KeyError):
    """No price for a model, or no price table; the message names the fix."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""

PACKAGED_TABLE = Path(__file__).resolve().parent.parent / "leaderboard" / "prices.json"


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    name: str
    input: float
    cached_input: float
    output: float

    def cost(self, input_tokens: int, cached_input_tokens: int, output_tokens: int) -> float:
        uncached = max(input_tokens - cached_input_tokens, 0)
        return (uncached * self.input + cached_input_tokens * self.cached_input + output_tokens * self.output) / 1e6


@dataclass(frozen=True)
class PriceTable:
    date: str
    models: dict[str, Price]
    aliases: dict[str, str]
    source: str

    def get(self, name: str) -> Price:
        base, at, tier = name.partition("@")
        key = self.aliases.get(base, base) + at + tier
        if key not in self.models:
            if tier and key.partition("@")[0] in self.models:
                raise PriceError(f"no {tier} price for model '{base}' in {self.source}; add a \"{tier}\" "
                                 f"entry to its prices, or pass --llm-price NAME / --slm-price NAME")
            known = ", ".join(sorted(k for k in self.models if "@" not in k))
            raise PriceError(f"no price for model '{name}' in {self.source} (known: {known}); "
                             f"add it to the table or pass --llm-price NAME / --slm-price NAME")
        return self.models[key]

    def to_json(self) -> dict[str, Any]:
        return {"date": self.date, "source": self.source}


def load_prices(path: Path | None = None) -> PriceTable:
    p = path or PACKAGED_TABLE
    if not p.exists():
        raise PriceError(f"price table not found at {p}; pass --prices PATH")
    raw = json.loads(p.read_text())
    models: dict[str, Price] = {}
    for k, v in raw["models"].items():
        models[k] = _price(k, v)
        models.update({f"{k}@{tier}": _price(f"{k}@{tier}", t) for tier, t in v.items() if isinstance(t, dict)})
    return PriceTable(date=raw["date"], models=models, aliases=dict(raw.get("aliases", {})), source=str(p))


def _price(name: str, v: dict[str, Any]) -> Price:
    return Price(name, float(v["input"]), float(v.get("cached_input", v["input"])), float(v["output"]))


def calls_cost(calls: Iterable[CallRecord], large: Price, small: Price) -> float:
    total = 0.0
    for c in calls:
        price = large if c.role == "large" else small
        total += price.cost(c.input_tokens, c.cached_input_tokens, c.output_tokens)
    return total
