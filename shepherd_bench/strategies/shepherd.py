"""Shepherding: the LLM writes the first k tokens of its answer (the hint), the SLM writes the rest.

Policies (``-S policy=``):
- ``fixed``: k from ``hint_tokens`` or, live, ``hint_fraction`` x an *estimated* full-answer length
  (``expected_answer_tokens``, else the per-task table below; the decision says it was an estimate).
- ``predicted``: k from a ``HintPolicy`` loaded from ``-S predictor=PATH`` (built by the grid/predictor
  commands), or injected with ``Shepherd.with_policy``. A *reactive* policy (``policy.reactive``) also
  reads the SLM's first samples: they are drawn first, for every query in ONE call, exactly as the grid
  drew them at level 0 (the samples and temperature recorded with the predictor, else ``samples`` /
  ``temperature``; seeds ``seed + s``; log-probabilities on), and featurised by the same function as in
  training (``predictor.reactive``). Their calls are recorded and paid. A no-hint decision answers with
  the first sample (no further call), as the replay prices it.
- ``adaptive``: grow the hint over ``steps`` (e.g. ``0,16,64,full``) until a check passes: for code
  whose prompt has doctest examples, a sample passes them all in the sandbox (``examples_check.py``;
  never the grading tests); otherwise ``samples`` SLM samples agree (self-consistency,
  ``consistency.py``). Every round's calls are paid and recorded.

Insertion (``-S mode=``): ``prefill`` continues the assistant turn that starts with the hint (graded
answer = hint + continuation; the continuation gets the rest of the task's token budget); ``in_prompt``
quotes the hint in the user turn as a partial solution and the SLM writes a whole answer (graded as is).

Known text is free: a query's ``answer_prefix`` (HumanEval: the code fence, imports, signature and
docstring; MBPP: the fence) opens the assistant turn of both models as prefilled input, so the LLM's
first paid token is the first token of the body and a k-token hint is k tokens of new content. The
decision records the exact ``hint_text`` the SLM received and, with a known prefix, how the LLM got it
(``llm_prefix_mode``: ``prefill``, or ``instructed`` where the backend cannot continue a turn).

If the LLM finishes within k tokens (finish reason "stop" or fewer than k tokens), its answer is the
answer and the SLM is not called. Batch-first: each stage is one ``generate`` call over all queries
still active.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, cast

from ..backends.base import GenResult, Message, Role
from ..backends.meter import CallRecord
from ..errors import UserError
from .base import Attempt, ModelPair, Param, ParamError, Query, StrategyBase, prefix_decision, query_kind
from .consistency import agreement
from .examples_check import Example, check_samples, doctest_examples

HintSize: TypeAlias = int | Literal["full"]

# Rough full-answer lengths (output tokens of a greedy LLM answer) used to turn a fraction into tokens
# live. An estimate only: the hint grid measures the real lengths, and -S expected_answer_tokens wins.
DEFAULT_ANSWER_TOKENS: dict[str, int] = {"gsm8k": 160, "cnk12": 300, "humaneval": 120, "mbpp": 100}
DEFAULT_ANSWER_TOKENS_BY_KIND: dict[str, int] = {"math": 200, "code": 120}

IN_PROMPT_TEMPLATE = (
    "{user}\n\nHere is the beginning of a solution written by a stronger model. Use it as a starting "
    "point and write your complete answer:\n\n<partial_solution>\n{hint}\n</partial_solution>"
)


class HintPolicy(Protocol):
    """Chooses a hint size per query: a token count (0 = no hint) or ``"full"`` (the LLM answers).

    A policy with ``reactive = True`` is called as ``hint_for(query, reactive=features)`` with the SLM's
    first samples' features (``predictor.reactive.reactive_features``); it may carry ``sampling``, a dict
    with the ``samples`` and ``temperature`` those were drawn with in training."""

    def hint_for(self, query: Query) -> HintSize: ...


class ReactiveHintPolicy(Protocol):
    """A ``HintPolicy`` that also reads the SLM's first samples' features."""

    reactive: bool

    def hint_for(self, query: Query, reactive: Mapping[str, float] | None = None) -> HintSize: ...


@dataclass(frozen=True)
class FixedHint:
    tokens: int

    def hint_for(self, query: Query) -> HintSize:
        return self.tokens

    def explain(self, query: Query) -> dict[str, Any]:
        return {"hint_source": "tokens"}


@dataclass(frozen=True)
class FractionHint:
    """``fraction`` of an estimated full-answer length (live runs cannot know the real one)."""

    fraction: float
    expected_tokens: int | None = None  # overrides the per-task table
    task_kind: str = "auto"

    def length(self, query: Query) -> tuple[int, str]:
        if self.expected_tokens is not None:
            return self.expected_tokens, "param expected_answer_tokens"
        if query.task in DEFAULT_ANSWER_TOKENS:
            return DEFAULT_ANSWER_TOKENS[query.task], f"default table ({query.task})"
        kind = query_kind(query, self.task_kind)
        return DEFAULT_ANSWER_TOKENS_BY_KIND[kind], f"default table (kind {kind})"

    def hint_for(self, query: Query) -> HintSize:
        return round(self.fraction * self.length(query)[0])

    def explain(self, query: Query) -> dict[str, Any]:
        n, source = self.length(query)
        return {"hint_source": "fraction", "hint_fraction": self.fraction, "expected_answer_tokens": n,
                "length_estimated": True, "length_source": source}


def load_hint_policy(path: str, threshold: float | None = None, full_threshold: float | None = None) -> HintPolicy:
    """The trained predictor at ``path`` (``shepherd_bench.predictor.load_policy``) with its two knobs."""
    from .. import predictor

    load = getattr(predictor, "load_policy", None)
    if load is None:
        raise UserError(f"cannot load predictor {path!r}: this version has no shepherd_bench.predictor.load_policy yet")
    policy: HintPolicy = load(path, threshold, full_threshold)
    return policy


def parse_steps(text: str) -> list[HintSize]:
    """``"0,16,64,full"`` -> [0, 16, 64, "full"]: strictly growing token counts, ``full`` only last."""
    steps: list[HintSize] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "full":
            steps.append("full")
        elif part.isdigit():
            steps.append(int(part))
        else:
            raise ParamError(f"strategy 'shepherd': steps item {part!r} is neither a token count nor 'full'")
    counts = [s for s in steps if s != "full"]
    if not steps or counts != sorted(set(counts)) or ("full" in steps and steps.index("full") != len(steps) - 1):
        raise ParamError(f"strategy 'shepherd': steps={text!r} must grow strictly, with 'full' only last")
    return steps


def in_prompt_query(q: Query, hint: str) -> Query:
    """``q`` with ``hint`` (the known answer prefix and the paid hint) quoted in its last user turn as a
    partial solution."""
    msgs = list(q.messages)
    last = max(i for i, m in enumerate(msgs) if m.role == "user")
    msgs[last] = Message("user", IN_PROMPT_TEMPLATE.format(user=msgs[last].content, hint=hint))
    return replace(q, messages=tuple(msgs))


def llm_finished(res: GenResult, k: int) -> bool:
    return res.finish_reason == "stop" or res.output_tokens < k


@dataclass
class _State:
    """One query's progress through the stages."""

    query: Query
    calls: list[CallRecord] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)
    answer: str = ""
    error: str | None = None
    done: bool = False
    hint: str = ""
    hint_tokens: int = 0
    samples: list[GenResult] = field(default_factory=list)  # the SLM's first samples (reactive policy)
    features: dict[str, float] = field(default_factory=dict)

    def record(self, role: Role, res: GenResult, purpose: str) -> bool:
        """Record the call; on a failed call finish with an error. True when the call succeeded."""
        self.calls.append(CallRecord.from_result(role, res, purpose))
        if not res.ok:
            self.error, self.done = f"{role} {purpose} call failed: {res.error}", True
        return res.ok

    def finish(self, answer: str) -> None:
        self.answer, self.done = answer, True

    def attempt(self) -> Attempt:
        return Attempt(self.query.id, "" if self.error else self.answer, self.calls, self.decision, self.error)


class Shepherd(StrategyBase):
    """LLM writes a k-token hint, the SLM completes the answer (fixed, adaptive or predicted k)."""

    name: ClassVar[str] = "shepherd"
    kind: ClassVar[str] = "shepherd"
    params: ClassVar[tuple[Param, ...]] = (
        Param("hint_tokens", int, 32, "hint size in LLM output tokens (policy=fixed)"),
        Param("hint_fraction", float, None, "hint as a fraction of the estimated full-answer length (policy=fixed)"),
        Param("expected_answer_tokens", int, None, "full-answer length for hint_fraction (default: per-task table)"),
        Param("mode", str, "prefill", "hint insertion: continue the assistant turn, or quote it in the user turn",
              ("prefill", "in_prompt")),
        Param("policy", str, "fixed", "how k is chosen", ("fixed", "adaptive", "predicted")),
        Param("predictor", str, "", "trained hint predictor (policy=predicted)"),
        Param("threshold", float, None, "p(need) at or above which a query gets a hint (policy=predicted; "
              "default: the predictor's own)"),
        Param("full_threshold", float, None, "p(need) at or above which a query gets the full LLM answer "
              "(policy=predicted; default: never by p(need)); threshold=0 full_threshold=0 is LLM-only"),
        Param("steps", str, "0,16,64,full", "hint sizes tried in order (policy=adaptive)"),
        Param("samples", int, 3, "SLM samples per round for the self-consistency check (policy=adaptive); "
              "first samples for a reactive predictor without recorded ones"),
        Param("temperature", float, 0.7, "SLM sampling temperature for the check (policy=adaptive) or a "
              "reactive predictor's first samples without a recorded one"),
        Param("min_agreement", float, 0.67, "share of samples that must agree to stop (policy=adaptive)"),
        Param("task_kind", str, "auto", "math or code agreement / length table (auto: from the query)",
              ("auto", "math", "code")),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c = self.config
        if "hint_tokens" in kwargs and c["hint_fraction"] is not None:
            raise ParamError("strategy 'shepherd': give hint_tokens or hint_fraction, not both")
        if c["hint_tokens"] < 0 or (c["hint_fraction"] is not None and not 0.0 <= c["hint_fraction"] <= 1.0):
            raise ParamError("strategy 'shepherd': hint_tokens must be >= 0 and hint_fraction within [0, 1]")
        if c["policy"] == "predicted" and not c["predictor"]:
            raise ParamError("strategy 'shepherd': policy=predicted needs -S predictor=PATH, built by the "
                             "grid/predictor commands")
        if c["policy"] == "adaptive" and c["samples"] < 2:
            raise ParamError("strategy 'shepherd': policy=adaptive needs samples >= 2 to check agreement")
        self.steps = parse_steps(c["steps"])
        self.hint_policy: HintPolicy | None = None
        self.given = frozenset(kwargs)

    def with_policy(self, policy: HintPolicy) -> Shepherd:
        """Use ``policy`` to choose hint sizes (how a trained predictor plugs in programmatically)."""
        self.hint_policy = policy
        return self

    def _policy(self) -> HintPolicy:
        c = self.config
        if self.hint_policy is None:
            if c["policy"] == "predicted":
                self.hint_policy = load_hint_policy(c["predictor"], c["threshold"], c["full_threshold"])
            elif c["hint_fraction"] is not None:
                self.hint_policy = FractionHint(c["hint_fraction"], c["expected_answer_tokens"], c["task_kind"])
            else:
                self.hint_policy = FixedHint(c["hint_tokens"])
        return self.hint_policy

    def solve(self, queries: list[Query], models: ModelPair) -> list[Attempt]:
        states = [_State(q) for q in queries]
        if self.config["policy"] == "adaptive":
            self._solve_adaptive(states, models)
        else:
            self._solve_once(states, models)
        return [s.attempt() for s in states]

    # -- fixed / predicted: one hint size per query ------------------------------------------------

    def _solve_once(self, states: list[_State], models: ModelPair) -> None:
        policy = self._policy()
        explain = getattr(policy, "explain", None)
        reactive = bool(getattr(policy, "reactive", False))
        for s in states:
            s.decision = {"policy": self.config["policy"], "mode": self.config["mode"]}
        if reactive:
            self._first_samples(states, policy, models)
        active = [s for s in states if not s.done]  # a failed sample call ends its query with an error
        sizes: list[HintSize] = []
        for s in active:  # explained right after its decision: a policy explains its latest one
            k = (cast(ReactiveHintPolicy, policy).hint_for(s.query, reactive=s.features) if reactive
                 else policy.hint_for(s.query))
            sizes.append(k)
            s.decision["hint_target"] = k
            if explain is not None:
                s.decision.update(explain(s.query))
        self._llm_stage(active, sizes, models)
        if reactive:
            for s, k in zip(active, sizes, strict=True):
                if k == 0:  # no hint: the first sample is the answer (no second SLM call)
                    s.decision["answer_sample"] = 0
                    s.finish(s.query.complete(s.samples[0].text))
        pending = [s for s in active if not s.done]
        self._slm_stage(pending, models)

    def _sampling(self, policy: HintPolicy) -> tuple[int, float]:
        """Samples and temperature of a reactive policy's first samples: as recorded in training, else
        the ``samples`` / ``temperature`` parameters (at most ``FIRST_SAMPLES``: no more are read)."""
        from ..predictor.reactive import FIRST_SAMPLES

        c = self.config
        rec = getattr(policy, "sampling", None) or {}
        for name in ("samples", "temperature"):
            want = rec.get(name)
            if want is not None and name in self.given and c[name] != want:
                raise ParamError(f"strategy 'shepherd': -S {name}={c[name]} but the reactive predictor was "
                                 f"trained on {name}={want}; drop -S {name} (its features would not match)")
        n = int(rec["samples"]) if rec.get("samples") is not None else min(c["samples"], FIRST_SAMPLES)
        t = float(rec["temperature"]) if rec.get("temperature") is not None else c["temperature"]
        if n < 2 or t <= 0:
            raise ParamError(f"strategy 'shepherd': a reactive predictor needs >= 2 SLM samples at a "
                             f"temperature > 0 (got samples={n}, temperature={t:g})")
        return n, t

    def _first_samples(self, states: list[_State], policy: HintPolicy, models: ModelPair) -> None:
        """Draw every query's first SLM samples (one call) and featurise them into ``_State.features``."""
        from ..predictor.reactive import ReactiveSample, reactive_features, sample_requests

        n, t = self._sampling(policy)
        reqs = [r for s in states for r in sample_requests(s.query, n, t, models.seed)]
        results = models.small.generate(reqs)
        for i, s in enumerate(states):
            group = results[i * n : (i + 1) * n]
            s.decision.update(reactive_samples=n, sample_temperature=t)
            if not all([s.record("small", r, "sample") for r in group]):
                continue
            kind = query_kind(s.query, self.config["task_kind"])
            s.samples = group
            s.features = reactive_features([ReactiveSample.from_result(r, kind) for r in group])
            s.decision["slm_sample_tokens"] = int(s.features["slm_sample_tokens"])

    def _llm_stage(self, states: list[_State], sizes: list[HintSize], models: ModelPair) -> None:
        """One LLM call for every query needing a hint (max_tokens=k) or the full answer."""
        todo = [(s, k) for s, k in zip(states, sizes, strict=True) if k == "full" or k > 0]
        reqs = [s.query.request() if k == "full" else s.query.request(max_tokens=k) for s, k in todo]
        for (s, k), res in zip(todo, models.large.generate(reqs), strict=True):
            self._take_hint(s, k, res)
        for s, k in zip(states, sizes, strict=True):
            if k == 0:
                s.decision.update(hint_tokens=0, hint_text="", llm_finished=False)

    @staticmethod
    def _take_hint(s: _State, k: HintSize, res: GenResult) -> None:
        if not s.record("large", res, "answer" if k == "full" else "hint"):
            return
        s.hint, s.hint_tokens = res.text, res.output_tokens
        finished = k == "full" or llm_finished(res, k)
        # hint_text: exactly the paid text the SLM continues from (after the query's known answer prefix)
        s.decision.update(hint_tokens=res.output_tokens, hint_text=res.text, llm_finished=finished,
                          **prefix_decision(s.query, res, "llm_prefix_mode"))
        if finished:
            s.finish(s.query.complete(res.text))

    def _slm_request_query(self, s: _State) -> tuple[Query, str, int]:
        """The query the SLM answers, the hint it continues (after the query's known answer prefix) and
        its token budget. ``in_prompt`` quotes the hint in the user turn; the assistant turn still starts
        with the known prefix."""
        q = s.query
        if not s.hint:
            return q, "", q.max_tokens
        if self.config["mode"] == "in_prompt":
            return in_prompt_query(q, q.complete(s.hint)), "", q.max_tokens
        return q, s.hint, max(1, q.max_tokens - s.hint_tokens)

    def _graded(self, s: _State, text: str) -> str:
        """The whole answer: known prefix + hint + continuation (``prefill``) or known prefix + the SLM's
        text (``in_prompt``)."""
        return s.query.complete(s.hint + text if self.config["mode"] == "prefill" else text)

    def _slm_stage(self, states: list[_State], models: ModelPair) -> None:
        reqs = []
        for s in states:
            q, prefix, budget = self._slm_request_query(s)
            reqs.append(q.request(prefix=prefix, max_tokens=budget))
        for s, res in zip(states, models.small.generate(reqs), strict=True):
            if s.record("small", res, "continue" if s.hint else "answer"):
                s.finish(self._graded(s, res.text))

    # -- adaptive: grow the hint until the SLM's samples agree ---------------------------------------

    def _solve_adaptive(self, states: list[_State], models: ModelPair) -> None:
        for s in states:
            s.decision = {"policy": "adaptive", "mode": self.config["mode"], "rounds": []}
        for i, step in enumerate(self.steps):
            active = [s for s in states if not s.done]
            if not active:
                break
            for s in active:
                s.decision["hint_target"] = step
            self._llm_stage(active, [step] * len(active), models)
            sampling = [s for s in active if not s.done]
            self._sample_round(sampling, models, last=i == len(self.steps) - 1)

    def _sample_round(self, states: list[_State], models: ModelPair, last: bool) -> None:
        """``samples`` SLM samples per query in one call; stop where they agree (or on the last step)."""
        n, c = self.config["samples"], self.config
        reqs = []
        for s in states:
            q, prefix, budget = self._slm_request_query(s)
            reqs += [q.request(prefix=prefix, max_tokens=budget, temperature=c["temperature"],
                               seed=models.seed + j) for j in range(n)]
        results = models.small.generate(reqs)
        rounds: list[tuple[_State, list[str], str, list[Example]]] = []
        for idx, s in enumerate(states):
            group = results[idx * n : (idx + 1) * n]
            if not all([s.record("small", r, "sample") for r in group]):
                continue
            texts = [self._graded(s, r.text) for r in group]
            kind = query_kind(s.query, c["task_kind"])
            rounds.append((s, texts, kind, doctest_examples(s.query.public_examples) if kind == "code" else []))
        checks = iter(check_samples([(texts, ex) for _, texts, _, ex in rounds if ex]))
        for s, texts, kind, examples in rounds:
            if examples:  # code with docstring examples: a sample that passes them all
                check = next(checks)
                passed = check.choice is not None
                # on the last step without a passing sample, the most agreeing sample
                choice = check.choice if check.choice is not None else agreement(texts, kind).choice
                s.decision["rounds"].append({"hint_tokens": s.hint_tokens, "check": "examples",
                                             "examples": check.examples, "passing": sum(check.passing)})
            else:  # self-consistency
                agree = agreement(texts, kind)
                passed, choice = agree.fraction >= c["min_agreement"], agree.choice
                s.decision["rounds"].append({"hint_tokens": s.hint_tokens, "check": "agreement",
                                             "agreement": round(agree.fraction, 4)})
            if passed or last:
                s.decision["check_passed"] = passed
                s.finish(texts[choice])
