"""Shepherding with a scripted pair: decisions and cost accounting exact to the token."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd_bench.backends.base import GenRequest, Message
from shepherd_bench.strategies import make_strategy
from shepherd_bench.strategies.base import Query
from shepherd_bench.strategies.shepherd import HintSize, Shepherd, in_prompt_query
from tests.scripted import count, failed, pair, tokens, words

SYSTEM = "You are a careful math solver."
LLM_ANSWER = words(100, "L")  # a 100-token greedy LLM answer
SLM_TAIL = "S0 S1 S2"


def query(i: int, max_tokens: int = 200, **kw: Any) -> Query:
    return Query(f"q{i}", (Message("system", SYSTEM), Message("user", f"problem {i} a b c")), max_tokens, **kw)


def prompt_len(q: Query) -> int:
    return sum(count(m.content) for m in q.messages)


def hint_of(k: int) -> str:
    return "".join(tokens(LLM_ANSWER)[:k])


def solve(params: dict[str, str], queries: list[Query], small: Any = None, large: Any = None) -> tuple[list[Any], Any, Any]:
    models, s, lg = pair(small or (lambda r: SLM_TAIL), large or (lambda r: LLM_ANSWER), seed=0)
    return make_strategy("shepherd", params).solve(queries, models), s, lg


def test_fixed_k32_prefill_costs_exactly_k_llm_tokens() -> None:
    qs = [query(i) for i in range(3)]
    attempts, small, large = solve({"hint_tokens": "32"}, qs)
    assert len(large.batches) == 1 and len(small.batches) == 1  # batch-first: one call per stage
    hint = hint_of(32)
    for q, a, lreq, sreq in zip(qs, attempts, large.requests, small.requests, strict=True):
        assert lreq.max_tokens == 32 and lreq.prefix == "" and lreq.messages == q.messages
        assert sreq.prefix == hint and sreq.messages == q.messages and sreq.max_tokens == 200 - 32
        assert a.answer == hint + SLM_TAIL and a.error is None
        hint_call, cont_call = a.calls
        assert (hint_call.role, hint_call.purpose, hint_call.output_tokens) == ("large", "hint", 32)
        assert hint_call.input_tokens == prompt_len(q)
        assert (cont_call.role, cont_call.purpose) == ("small", "continue")
        assert (cont_call.input_tokens, cont_call.output_tokens) == (prompt_len(q) + 32, 3)
        assert a.decision == {"policy": "fixed", "mode": "prefill", "hint_target": 32, "hint_source": "tokens",
                              "hint_tokens": 32, "hint_text": hint, "llm_finished": False}
    assert sum(c.output_tokens for a in attempts for c in a.calls if c.role == "large") == 3 * 32


def test_llm_finishing_within_k_is_the_answer_and_skips_the_slm() -> None:
    short = "#### 42"  # 2 tokens < k

    def large(r: GenRequest) -> str:
        return short if "problem 1 " in r.messages[-1].content else LLM_ANSWER

    attempts, small, _ = solve({"hint_tokens": "32"}, [query(0), query(1)], large=large)
    assert [r.messages[-1].content for r in small.requests] == ["problem 0 a b c"]
    done = attempts[1]
    assert done.answer == short and [c.role for c in done.calls] == ["large"]
    assert done.decision["llm_finished"] is True and done.decision["hint_tokens"] == 2


def test_llm_stop_at_exactly_k_counts_as_finished() -> None:
    attempts, small, _ = solve({"hint_tokens": "100"}, [query(0)])  # the answer is exactly 100 tokens
    assert attempts[0].decision["llm_finished"] is True and attempts[0].answer == LLM_ANSWER
    assert small.requests == []


def test_in_prompt_quotes_the_hint_in_the_user_turn() -> None:
    q = query(0)
    attempts, small, _ = solve({"hint_tokens": "8", "mode": "in_prompt"}, [q])
    (req,) = small.requests
    hint = hint_of(8)
    assert req.prefix == "" and req.max_tokens == q.max_tokens
    assert req.messages[0] == q.messages[0] and req.messages == in_prompt_query(q, hint).messages
    assert req.messages[-1].content.startswith("problem 0 a b c") and hint in req.messages[-1].content
    a = attempts[0]
    assert a.answer == SLM_TAIL  # the SLM writes the whole answer; the hint is not prepended
    assert a.calls[1].input_tokens == count(req.messages[0].content) + count(req.messages[1].content)
    assert a.decision["mode"] == "in_prompt"


def test_zero_hint_is_slm_only() -> None:
    attempts, small, large = solve({"hint_tokens": "0"}, [query(0)])
    assert large.requests == [] and small.requests[0].prefix == ""
    (call,) = attempts[0].calls
    assert (call.role, call.purpose) == ("small", "answer")
    assert attempts[0].decision["hint_tokens"] == 0 and attempts[0].answer == SLM_TAIL


def test_hint_fraction_uses_a_recorded_length_estimate() -> None:
    attempts, _, large = solve({"hint_fraction": "0.2", "expected_answer_tokens": "50"}, [query(0)])
    assert large.requests[0].max_tokens == 10
    d = attempts[0].decision
    assert d["hint_tokens"] == 10 and d["length_estimated"] is True and d["expected_answer_tokens"] == 50
    assert d["length_source"] == "param expected_answer_tokens"

    attempts, _, large = solve({"hint_fraction": "0.25"}, [query(0, task="gsm8k"), query(1, kind="code")])
    assert [r.max_tokens for r in large.requests] == [40, 30]  # 0.25 x 160 (gsm8k), 0.25 x 120 (code)
    assert attempts[1].decision["length_source"] == "default table (kind code)"


def test_failed_calls_become_errors_never_answers() -> None:
    attempts, small, _ = solve({"hint_tokens": "8"}, [query(0)], large=lambda r: failed("rate limited"))
    assert attempts[0].error == "large hint call failed: rate limited" and attempts[0].answer == ""
    assert small.requests == [] and attempts[0].calls[0].error == "rate limited"

    attempts, _, _ = solve({"hint_tokens": "8"}, [query(0)], small=lambda r: failed("oom"))
    assert attempts[0].error == "small continue call failed: oom" and attempts[0].answer == ""
    assert len(attempts[0].calls) == 2


class _Table:
    def __init__(self, sizes: dict[str, HintSize]) -> None:
        self.sizes = sizes

    def hint_for(self, query: Query) -> HintSize:
        return self.sizes[query.id]


def test_an_injected_hint_policy_plugs_in() -> None:
    qs = [query(0), query(1), query(2)]
    models, small, large = pair(lambda r: SLM_TAIL, lambda r: LLM_ANSWER)
    strat = Shepherd(policy="predicted", predictor="unused").with_policy(_Table({"q0": 0, "q1": 8, "q2": "full"}))
    a0, a1, a2 = strat.solve(qs, models)
    assert [r.max_tokens for r in large.requests] == [8, 200]  # one LLM call for hint and full answer
    assert len(large.batches) == 1
    assert a0.answer == SLM_TAIL and a1.answer == hint_of(8) + SLM_TAIL and a2.answer == LLM_ANSWER
    assert a2.calls[0].purpose == "answer" and a2.decision["llm_finished"] is True
    assert [r.messages[-1].content for r in small.requests] == ["problem 0 a b c", "problem 1 a b c"]


def test_predicted_without_a_predictor_module_says_so() -> None:
    s = Shepherd(policy="predicted", predictor="/nope.json")
    models, _, _ = pair(lambda r: SLM_TAIL, lambda r: LLM_ANSWER)
    with pytest.raises(Exception, match="predictor"):
        s.solve([query(0)], models)


def test_adaptive_grows_the_hint_until_samples_agree() -> None:
    """q0 agrees without a hint, q1 once it has a 4-token hint, q2 never: it gets the LLM's answer."""

    def small(r: GenRequest) -> str:
        user = r.messages[-1].content
        if "problem 0 " in user or ("problem 1 " in user and r.prefix):
            return "so #### 7"
        return f"so #### {r.seed}"  # samples disagree

    params = {"policy": "adaptive", "steps": "0,4,full", "samples": "3", "temperature": "0.8"}
    (a0, a1, a2), s, lg = solve(params, [query(0), query(1), query(2)], small=small)
    assert [len(b) for b in s.batches] == [9, 6] and [len(b) for b in lg.batches] == [2, 1]
    assert all(r.temperature == 0.8 for r in s.requests) and {r.seed for r in s.requests} == {0, 1, 2}
    assert [r.max_tokens for r in lg.requests] == [4, 4, 200]

    assert a0.answer == "so #### 7" and [c.purpose for c in a0.calls] == ["sample"] * 3
    assert a0.decision["rounds"] == [{"hint_tokens": 0, "check": "agreement", "agreement": 1.0}]
    assert a0.decision["check_passed"]

    assert a1.answer == hint_of(4) + "so #### 7"
    assert [c.purpose for c in a1.calls] == ["sample"] * 3 + ["hint"] + ["sample"] * 3
    assert a1.decision["rounds"] == [{"hint_tokens": 0, "check": "agreement", "agreement": 0.3333},
                                     {"hint_tokens": 4, "check": "agreement", "agreement": 1.0}]
    assert a1.decision["hint_target"] == 4 and a1.decision["hint_tokens"] == 4
    assert sum(c.output_tokens for c in a1.calls if c.role == "large") == 4

    assert a2.answer == LLM_ANSWER and a2.decision["hint_target"] == "full" and a2.decision["llm_finished"]
    assert [c.purpose for c in a2.calls] == ["sample"] * 3 + ["hint"] + ["sample"] * 3 + ["answer"]
    assert sum(c.output_tokens for c in a2.calls if c.role == "large") == 4 + 100


def test_adaptive_without_full_keeps_the_majority_at_the_last_step() -> None:
    params = {"policy": "adaptive", "steps": "0,4", "samples": "2"}
    (a,), _, _ = solve(params, [query(0)], small=lambda r: f"#### {r.seed}")
    assert a.decision["check_passed"] is False and a.answer == hint_of(4) + "#### 0"


def test_adaptive_code_agreement_ignores_formatting() -> None:
    def small(r: GenRequest) -> str:
        body = "return a+b" if r.seed else "return a + b  # sum"
        return f"```python\ndef add(a, b):\n    \"\"\"Add.\"\"\"\n    {body}\n```"

    q = Query("c0", (Message("user", "write add"),), 100, kind="code")
    (a,), _, lg = solve({"policy": "adaptive", "steps": "0,full", "samples": "3"}, [q], small=small)
    assert lg.requests == [] and a.decision["check_passed"] is True


ADD_PROMPT = '''def add(a: int, b: int) -> int:
    """Add two numbers.
    >>> add(2, 3)
    5
    >>> add(-1, 1)
    0
    """
'''


def test_adaptive_code_runs_the_docstring_examples() -> None:
    """With doctest examples, a round passes when a sample passes them all in the sandbox, even if the
    samples disagree; agreement alone does not pass a round whose samples all fail the examples."""
    from shepherd_bench.tasks.humaneval import docstring_examples

    llm_answer = "```python\ndef add(a, b):\n    return a + b\n```"  # 4-token hint: "```python\ndef add(a, b):\n    "

    def small(r: GenRequest) -> str:
        if not r.prefix:  # no hint: three identical wrong programs (they agree)
            return "```python\ndef add(a, b):\n    return a - b\n```"
        return ("return a + b" if r.seed == 1 else "return 0") + "\n```"  # one right sample of three

    q = Query("he0", (Message("user", ADD_PROMPT),), 100, kind="code", public_examples=docstring_examples(ADD_PROMPT))
    (a,), _, lg = solve({"policy": "adaptive", "steps": "0,4,full", "samples": "3"}, [q], small=small,
                        large=lambda r: llm_answer)
    assert a.decision["rounds"] == [{"hint_tokens": 0, "check": "examples", "examples": 2, "passing": 0},
                                    {"hint_tokens": 4, "check": "examples", "examples": 2, "passing": 1}]
    assert a.decision["check_passed"] is True and a.answer == "```python\ndef add(a, b):\n    return a + b\n```"
    assert len(lg.requests) == 1  # one 4-token hint; the full answer was never needed


KNOWN = "```python\ndef f(x):\n    \"\"\"Doc.\"\"\"\n"


@pytest.mark.parametrize("mode", ["prefill", "in_prompt"])
def test_known_answer_prefix_is_prefilled_input_never_a_paid_hint(mode: str) -> None:
    """A code query's known prefix (fence + prompt) opens both models' assistant turns as input; the
    k paid hint tokens are k tokens of body; the graded answer is prefix + hint + continuation."""
    qs = [query(i, answer_prefix=KNOWN) for i in range(2)]
    attempts, small, large = solve({"hint_tokens": "16", "mode": mode}, qs)
    hint = hint_of(16)
    for q, a, lreq, sreq in zip(qs, attempts, large.requests, small.requests, strict=True):
        assert lreq.prefix == KNOWN and lreq.max_tokens == 16
        hint_call, cont_call = a.calls
        assert hint_call.output_tokens == 16
        assert hint_call.input_tokens == prompt_len(q) + count(KNOWN)  # priced as input, as the API bills it
        assert a.decision["hint_text"] == hint and a.decision["llm_prefix_mode"] == "prefill"
        if mode == "prefill":
            assert sreq.prefix == KNOWN + hint and sreq.messages == q.messages
            assert a.answer == KNOWN + hint + SLM_TAIL
        else:
            assert sreq.prefix == KNOWN and KNOWN + hint in sreq.messages[-1].content
            assert a.answer == KNOWN + SLM_TAIL


def test_known_answer_prefix_in_baselines_and_full_answers() -> None:
    q = query(0, answer_prefix=KNOWN)
    for strategy, role in (("slm", "small"), ("llm", "large")):
        models, s, lg = pair(lambda r: SLM_TAIL, lambda r: LLM_ANSWER)
        (a,) = make_strategy(strategy, {}).solve([q], models)
        (req,) = (s if role == "small" else lg).requests
        assert req.prefix == KNOWN and a.answer.startswith(KNOWN) and a.decision["prefix_mode"] == "prefill"
    (a,), _, _ = solve({"hint_tokens": "500"}, [q])  # the LLM finishes within k: its answer, completed
    assert a.answer == KNOWN + LLM_ANSWER and a.decision["llm_finished"] is True
