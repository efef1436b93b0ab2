"""The Backend protocol: one batched ``generate`` over chat requests, and the records it returns.

Every backend (CPU llama.cpp, vLLM, OpenAI-compatible) speaks this; strategies never see more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["small", "large"]


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenRequest:
    """One generation. ``prefix`` is an assistant-turn start to continue: the query's known answer prefix
    (e.g. a code prompt's signature and docstring) followed by the hint, if any."""

    messages: tuple[Message, ...]
    max_tokens: int
    prefix: str = ""
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = False

    def key_dict(self) -> dict[str, Any]:
        """Everything that determines the output: the cache key material."""
        d = asdict(self)
        d["messages"] = [asdict(m) for m in self.messages]
        d["stop"] = list(self.stop)
        return d


@dataclass
class GenResult:
    """What a backend returns for one request. ``text`` excludes the prefix."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    finish_reason: str = ""
    latency_s: float = 0.0
    token_ids: list[int] | None = None
    tokens: list[str] | None = None  # output token texts (when available): hints are cut at token boundaries
    token_logprobs: list[float] | None = None
    cached: bool = False
    error: str | None = None
    # how a request's prefix was given: "prefill" (the assistant turn was continued), "instructed" (a
    # backend that cannot continue a turn was asked in the user turn for what follows it); "" = no prefix
    prefix_mode: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GenResult:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(frozen=True)
class BackendIdentity:
    """What makes two backends produce different outputs for the same request: the cache namespace."""

    kind: str
    model: str
    revision: str = ""  # sha256 of the weights file, or a model revision / version string
    base_url: str = ""
    chat_template_sha256: str = ""
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def short(self) -> str:
        return f"{self.kind}:{self.model}"


# Called with (index in the batch, result) as each call of a batch finishes, by backends that set
# ``streams_results = True``: the cache stores it at once, so a run killed mid-batch loses no finished call.
ResultSink = Callable[[int, GenResult], None]


@runtime_checkable
class Backend(Protocol):
    """A model that answers a batch of chat requests at once (batching is the backend's business)."""

    @property
    def identity(self) -> BackendIdentity: ...

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]: ...

    def close(self) -> None: ...


def request_key(identity: BackendIdentity, request: GenRequest) -> str:
    """Cache key: backend identity + the whole request (never the request alone)."""
    payload = json.dumps({"backend": identity.key(), "request": request.key_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
