"""A run through the OpenAI-compatible client while the server misbehaves, one fault kind per query.

Policy under test: transport faults (429 with retry-after, 500/503, connection reset, timeout, a
truncated body) are retried a bounded number of times with backoff; what still fails is recorded as an
error on that sample (``correct: null``, never graded), counted in the summary's ``errors``; accuracy
counts errors as wrong by default (``--errors wrong``) or leaves them out (``--errors exclude``), and the
summary carries both figures. A response without usage or with empty content is an error at once (not
retried: an empty answer may already be billed). The run goes on past every failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from shepherd_bench.config import ModelConfig, RunConfig
from shepherd_bench.prices import load_prices
from shepherd_bench.runner import execute
from tests.openai_server import Fault, OpenAILoopbackServer, answer_table, canned_generator, gsm8k_table

KEY_ENV = "SB_FAULTS_TEST_KEY"
KEY = "sk-faults-test-key-31337"
N = 10
MAX_RETRIES = 2
QUICK = 0.05  # retry-after seconds


def status(code: int, retry_after: float | None = QUICK) -> Fault:
    return Fault("status", status=code, retry_after=retry_after)


# query index -> (faults its requests meet in order, expected server attempts, expected error substring)
PLAN: dict[int, tuple[list[Fault], int, str | None]] = {
    0: ([status(429)], 2, None),
    1: ([status(503), status(503)], 3, None),
    2: ([status(500)], 2, None),
    3: ([Fault("reset")], 2, None),
    4: ([Fault("delay", delay_s=2.0)], 2, None),  # past the 0.6 s client timeout
    5: ([Fault("malformed")], 2, None),
    6: ([Fault("no_usage")], 1, "without usage"),
    7: ([Fault("empty")], 1, "empty completion"),
    8: ([status(500, None)] * 3, 3, "HTTP 500"),  # no retry-after: the client's own exponential backoff
    9: ([status(429)] * 3, 3, "HTTP 429"),
}


@pytest.fixture(scope="module")
def questions(data_dir: Path) -> list[str]:
    return list(gsm8k_table(data_dir / "gsm8k" / "test.jsonl", N))


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[OpenAILoopbackServer]:
    table = gsm8k_table(data_dir / "gsm8k" / "test.jsonl", N)
    with OpenAILoopbackServer(canned_generator(answer_table(table)), api_key=KEY) as srv:
        yield srv


def run_config(data_dir: Path, base_url: str, policy: str = "wrong") -> RunConfig:
    opts = {"base_url": base_url, "api_key_env": KEY_ENV, "max_retries": str(MAX_RETRIES),
            "timeout_s": "0.6", "concurrency": "16"}
    return RunConfig(task="gsm8k", strategy="llm", strategy_params={}, slm=ModelConfig("llamacpp", "free"),
                     llm=ModelConfig("openai:loopback", "gpt-4o-mini", opts), limit=N,
                     data_dir=str(data_dir), batch_size=N, error_policy=policy)


def attempts_by_query(server: OpenAILoopbackServer, questions: list[str]) -> dict[int, list[float]]:
    """Arrival times of the requests for each query."""
    out: dict[int, list[float]] = {i: [] for i in range(len(questions))}
    for t, body in zip(server.state.arrived, server.state.bodies, strict=True):
        last = body["messages"][-1]["content"]
        out[next(i for i, q in enumerate(questions) if q in last)].append(t)
    return out


def samples(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


class Run(NamedTuple):
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    folder: Path


@pytest.fixture(scope="module")
def faulty_run(server: OpenAILoopbackServer, questions: list[str], data_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Run:
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, KEY)
    server.reset()
    for i, (faults, _, _) in PLAN.items():
        server.inject_for(questions[i], *faults)
    out = tmp_path_factory.mktemp("faults") / "run"
    try:
        res = execute(run_config(data_dir, server.base_url), prices=load_prices(), out=out,
                      cache_path=out.parent / "cache.sqlite", progress=False)
    finally:
        mp.undo()
    return Run(res.summary, samples(out), out.parent)


def test_every_query_is_recorded_and_the_run_goes_on(faulty_run: Run) -> None:
    summary, rows, _ = faulty_run
    assert summary["n"] == N == len(rows) == len({r["query_id"] for r in rows})


def test_transient_faults_are_retried_within_the_bound(
    faulty_run: Run, server: OpenAILoopbackServer, questions: list[str]
) -> None:
    attempts = attempts_by_query(server, questions)
    assert {i: len(attempts[i]) for i in PLAN} == {i: want for i, (_, want, _) in PLAN.items()}
    assert all(len(a) <= MAX_RETRIES + 1 for a in attempts.values())
    t = attempts[8]  # exponential backoff: ~0.5 s then ~1 s (each less up to 25% jitter)
    assert t[1] - t[0] >= 0.37 and t[2] - t[1] >= 0.75


def test_what_still_fails_is_an_error_never_graded(faulty_run: Run,
                                                    questions: list[str]) -> None:
    summary, rows, _ = faulty_run
    by_index = {r["index"]: r for r in rows}
    for i, (_, _, err) in PLAN.items():
        r = by_index[i]
        if err is None:
            assert (r["status"], r["correct"], r["error"]) == ("pass", True, None), (i, r)
        else:
            assert r["status"] == "error" and r["correct"] is None and r["extracted"] is None, (i, r)
            assert err in r["error"] and r["calls"][0]["error"] == r["error"]
    failed = sum(1 for _, _, e in PLAN.values() if e)
    assert summary["errors"] == failed and summary["correct"] == N - failed
    assert summary["error_policy"] == "wrong"
    assert summary["accuracy"] == summary["accuracy_errors_as_wrong"] == pytest.approx((N - failed) / N)
    assert summary["accuracy_excluding_errors"] == pytest.approx(1.0)


def test_failed_calls_are_not_cached_so_a_new_run_asks_again(
    faulty_run: Run, server: OpenAILoopbackServer, data_dir: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    server.reset()
    out = faulty_run.folder / "excluded"
    s = execute(run_config(data_dir, server.base_url, policy="exclude"), prices=load_prices(), out=out,
                cache_path=out.parent / "cache.sqlite", progress=False).summary
    failed = sum(1 for _, _, e in PLAN.values() if e)
    assert len(server.state.bodies) == failed  # the successes came from the cache
    assert (s["cached_calls"], s["model_calls"], s["errors"], s["correct"]) == (N - failed, failed, 0, N)
    assert s["error_policy"] == "exclude" and s["accuracy"] == s["accuracy_excluding_errors"] == 1.0


def test_retry_policy_matches_the_sdk() -> None:
    """Which statuses are retried and how long the server asked to wait: the OpenAI SDK's rules."""
    import email.utils
    import time

    from shepherd_bench.backends.openai_compat import _error_message, _retry_after, _should_retry

    retried = {s for s in (400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504) if _should_retry(s, {})}
    assert retried == {408, 409, 429, 500, 502, 503, 504}
    assert _should_retry(503, {"x-should-retry": "false"}) is False
    assert _should_retry(400, {"x-should-retry": "true"}) is True
    assert _retry_after({}) is None
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({"retry-after": "soon"}) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (_retry_after({"retry-after": date}) or 0) <= 31
    assert _error_message('{"error": {"message": "Rate limit reached", "type": "x"}}') == "Rate limit reached"
    assert _error_message('{"detail": "nope"}') == "{'detail': 'nope'}"
    assert _error_message("<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert _error_message("") == "(empty body)"
