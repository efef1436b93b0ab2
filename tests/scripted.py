"""A scripted Backend for unit tests: deterministic texts, exact token counts, every request recorded.

Tokens are whitespace-delimited words with their trailing whitespace (``"a b "`` is two tokens), so a
test can state costs to the token:
- ``input_tokens`` = tokens of every message content + tokens of the assistant prefix;
- the responder gives the *full* text the model would write after the prefix; the backend returns its
  first ``max_tokens`` tokens (finish reason ``length``) or all of it (``stop``), like a greedy model;
- with ``logprobs=True`` each output token gets ``logprob`` (a float or a function of the request).
A responder may return a ``GenResult`` instead of text (an error, a custom finish reason).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from shepherd_bench.backends.base import BackendIdentity, GenRequest, GenResult
from shepherd_bench.backends.meter import MeteredBackend
from shepherd_bench.strategies.base import ModelPair

Responder = Callable[[GenRequest], str | GenResult]
_TOKEN = re.compile(r"\S+\s*")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count(text: str) -> int:
    return len(tokens(text))


def words(n: int, stem: str = "w") -> str:
    """``n`` distinct tokens: ``"w0 w1 ... w{n-1}"``."""
    return " ".join(f"{stem}{i}" for i in range(n))


def prompt_tokens(req: GenRequest) -> int:
    return sum(count(m.content) for m in req.messages) + count(req.prefix)


class ScriptedBackend:
    def __init__(self, responder: Responder, *, name: str = "scripted",
                 logprob: float | Callable[[GenRequest], float] = -0.1) -> None:
        self.responder = responder
        self.name = name
        self.logprob = logprob
        self.requests: list[GenRequest] = []
        self.batches: list[list[GenRequest]] = []

    @property
    def identity(self) -> BackendIdentity:
        return BackendIdentity(kind="scripted", model=self.name)

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]:
        self.batches.append(list(requests))
        self.requests.extend(requests)
        return [self._one(r) for r in requests]

    def _one(self, req: GenRequest) -> GenResult:
        out = self.responder(req)
        if isinstance(out, GenResult):
            return out
        toks = tokens(out)
        kept = toks[: req.max_tokens]
        lp = self.logprob(req) if callable(self.logprob) else self.logprob
        return GenResult(
            text="".join(kept),
            input_tokens=prompt_tokens(req),
            output_tokens=len(kept),
            finish_reason="length" if len(toks) > req.max_tokens else "stop",
            tokens=kept,
            token_logprobs=[lp] * len(kept) if req.logprobs else None,
        )

    def close(self) -> None:
        pass


def pair(small: Responder, large: Responder, seed: int = 0, **kw: float) -> tuple[ModelPair, ScriptedBackend, ScriptedBackend]:
    """A metered ModelPair over two scripted backends, and the backends (to inspect their requests)."""
    s, lg = ScriptedBackend(small, name="small", **kw), ScriptedBackend(large, name="large", **kw)
    return ModelPair(small=MeteredBackend(s, "small"), large=MeteredBackend(lg, "large"), seed=seed), s, lg


def failed(msg: str = "boom") -> GenResult:
    return GenResult(text="", error=msg)
