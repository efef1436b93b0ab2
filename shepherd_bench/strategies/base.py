"""Strategy protocol: ``solve(queries, models) -> attempts``, batch-first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..backends.base import GenRequest, Message
from ..backends.meter import CallRecord, MeteredBackend
from ..errors import UserError


@dataclass(frozen=True)
class Query:
    """One benchmark item as a strategy sees it: the chat to answer and generation settings.

    Strategies never see grading material (tests, gold answers).
    """

    id: str
    messages: tuple[Message, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()
    public_examples: str = ""  # e.g. docstring examples a strategy may legitimately check against
    task: str = ""  # task name (e.g. "gsm8k"): keys per-task defaults such as expected answer length
    kind: str = ""  # "math" | "code" | "" (unknown: strategies that need it infer it, see ``query_kind``)
    # Text the harness already knows the answer starts with (HumanEval: the code fence, imports, signature
    # and docstring; MBPP: the code fence). Every request continues an assistant turn that starts with it,
    # so it is prefilled input for every model, never paid as output; ``complete`` puts it back in front of
    # what the models wrote, so the graded answer is a whole program.
    answer_prefix: str = ""

    def user_text(self) -> str:
        """The text of the user turn(s): what routers featurise."""
        return "\n".join(m.content for m in self.messages if m.role == "user")

    def complete(self, text: str) -> str:
        """The whole answer: the known ``answer_prefix`` followed by what the models wrote after it."""
        return self.answer_prefix + text

    def request(self, *, prefix: str = "", max_tokens: int | None = None, temperature: float = 0.0,
                seed: int = 0, logprobs: bool = False) -> GenRequest:
        """A request continuing the assistant turn from ``answer_prefix + prefix`` (``prefix``: a hint)."""
        return GenRequest(
            messages=self.messages,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            prefix=self.answer_prefix + prefix,
            temperature=temperature,
            stop=self.stop,
            seed=seed,
            logprobs=logprobs,
        )


@dataclass
class Attempt:
    """A strategy's answer to one query, with every call it paid for and what it decided."""

    query_id: str
    answer: str
    calls: list[CallRecord] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a failed call: the sample is an error, never graded as an answer


@dataclass
class ModelPair:
    """The shared SLM and LLM, already wrapped by cache and meter. Strategies never build clients."""

    small: MeteredBackend
    large: MeteredBackend
    seed: int = 0  # the run seed: strategies derive every random choice from it


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()  # allowed values of a str parameter (empty: any)


class ParamError(UserError, ValueError):
    """A bad ``-S key=value``: unknown key (the message lists the valid keys), bad type or bad value."""


class Strategy(Protocol):
    name: ClassVar[str]
    kind: ClassVar[str]  # "baseline" | "shepherd" | "route" | "cascade"
    params: ClassVar[tuple[Param, ...]]

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]: ...

    def describe(self) -> dict[str, Any]: ...


class StrategyBase:
    """Convenience base: typed parameters from ``-S key=value`` pairs, validated against ``params``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # the models it may call: those are checked before the run starts (API key, model file)
    roles: ClassVar[frozenset[str]] = frozenset({"small", "large"})

    def __init__(self, **kwargs: Any) -> None:
        self.config: dict[str, Any] = self.parse_config(kwargs)

    @classmethod
    def parse_config(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``kwargs``, each checked against ``params`` (``ParamError`` otherwise)."""
        valid = {p.name: p for p in cls.params}
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            keys = ", ".join(valid) or "(none)"
            raise ParamError(f"strategy '{cls.name}' has no parameter {unknown[0]!r}; valid keys: {keys}")
        config: dict[str, Any] = {p.name: p.default for p in cls.params}
        for k, v in kwargs.items():
            config[k] = coerce_param(valid[k], v, cls.name)
        return config

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "kind": self.kind, "params": dict(self.config)}

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:  # pragma: no cover
        raise NotImplementedError


def coerce_param(p: Param, value: Any, strategy: str) -> Any:
    if p.choices and value not in p.choices:
        raise ParamError(f"strategy '{strategy}': parameter {p.name}={value!r} must be one of {', '.join(p.choices)}")
    if not isinstance(value, str) or p.type is str:
        return value
    try:
        if p.type is bool:
            low = value.lower()
            if low not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(value)
            return low in {"1", "true", "yes"}
        return p.type(value)
    except ValueError:
        raise ParamError(
            f"strategy '{strategy}': parameter {p.name}={value!r} is not a valid {p.type.__name__}"
        ) from None


def single_call_attempt(q: Query, role: str, res: Any, purpose: str = "answer") -> Attempt:
    rec = CallRecord.from_result(role, res, purpose)  # type: ignore[arg-type]
    return Attempt(query_id=q.id, answer=q.complete(res.text) if res.ok else "", calls=[rec],
                   decision={"model": role, **prefix_decision(q, res)}, error=res.error)


def prefix_decision(q: Query, res: Any, key: str = "prefix_mode") -> dict[str, str]:
    """How a call with a known answer prefix received it: ``{key: "prefill"}`` (assistant turn continued)
    or ``"instructed"`` (a backend that cannot continue a turn was asked for the rest only); empty when
    the query has no known prefix."""
    if not q.answer_prefix:
        return {}
    return {key: str(getattr(res, "prefix_mode", "") or "prefill")}


def query_kind(q: Query, override: str = "auto") -> str:
    """``math`` or ``code``: the override, else ``Query.kind``, else a guess from the prompt (documented
    fallback for queries built before tasks set ``kind``: public examples or a Python system prompt -> code)."""
    if override not in ("", "auto"):
        return override
    if q.kind:
        return q.kind
    system = " ".join(m.content for m in q.messages if m.role == "system").lower()
    return "code" if q.public_examples or "python" in system or "programmer" in system else "math"
