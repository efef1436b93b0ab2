"""Queries for lm-eval tasks that are not ours: the context as one user turn, lm-eval's gen settings."""

from __future__ import annotations

from typing import Any

from ..backends.base import Message
from ..strategies.base import Query


def foreign_query(index: int, args: tuple[Any, ...]) -> Query:
    context, gen_kwargs = (args + ({},))[:2]
    gen = dict(gen_kwargs or {})
    until = gen.get("until") or []
    stop = tuple([until] if isinstance(until, str) else until)
    return Query(id=f"lm-eval-{index}", messages=(Message("user", str(context)),),
                 max_tokens=int(gen.get("max_gen_toks", 256)), stop=stop)
