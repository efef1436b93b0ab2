"""The ``openai-batch`` backend against the real loopback server's Files and Batches API (and a local
stand-in for ``vllm run-batch``): the same results as the streaming client, per-request errors for an
expired, partly failed or failed batch, re-attaching after ``kill -9`` without submitting again, batch
prices, and one ``shepherd-bench run`` end to end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.backends import make_backend
from shepherd_bench.backends.base import GenRequest, GenResult, Message, request_key
from shepherd_bench.backends.cache import CachedBackend, GenerationCache
from shepherd_bench.backends.openai_batch import BatchJob, BatchSettings, OpenAIBatchBackend
from shepherd_bench.backends.openai_compat import OpenAICompatBackend, OpenAISettings
from shepherd_bench.config import ConfigError, ModelConfig, RunConfig, default_price
from shepherd_bench.prices import PriceError, load_prices
from shepherd_bench.runner import execute
from tests.openai_server import (
    Completion,
    Fault,
    OpenAILoopbackServer,
    answer_table,
    canned_generator,
    gsm8k_table,
)

KEY_ENV = "SB_BATCH_TEST_KEY"
KEY = "sk-batch-test-NEVER-ON-DISK-5150"
N = 6
FAST = {"poll_s": "0.01", "max_poll_s": "0.05"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def table(data_dir: Path) -> dict[str, str]:
    return gsm8k_table(data_dir / "gsm8k" / "test.jsonl", N)


@pytest.fixture(scope="module")
def server(table: dict[str, str]) -> Iterator[OpenAILoopbackServer]:
    with OpenAILoopbackServer(canned_generator(answer_table(table)), api_key=KEY) as srv:
        yield srv


@pytest.fixture()
def srv(server: OpenAILoopbackServer, monkeypatch: pytest.MonkeyPatch) -> OpenAILoopbackServer:
    server.reset()
    monkeypatch.setenv(KEY_ENV, KEY)
    return server


def run_config(data_dir: Path, spec: str, opts: dict[str, str], limit: int = N) -> RunConfig:
    llm = ModelConfig(spec, default_price(spec, "large"), opts)
    return RunConfig(task="gsm8k", strategy="llm", strategy_params={}, slm=ModelConfig("llamacpp", "free"),
                     llm=llm, limit=limit, data_dir=str(data_dir), batch_size=N)


def batch_opts(srv: OpenAILoopbackServer, state: Path, **kw: str) -> dict[str, str]:
    return {"base_url": srv.base_url, "api_key_env": KEY_ENV, "state_dir": str(state), **FAST, **kw}


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def records(state: Path) -> list[Path]:
    return sorted(state.glob("*/*.json"))


def uploaded_lines(srv: OpenAILoopbackServer, n: int) -> list[dict[str, Any]]:
    return [json.loads(x) for x in srv.state.files[srv.state.uploads[n]].decode().splitlines()]


def test_a_batch_run_equals_the_streaming_run_at_the_batch_price(srv: OpenAILoopbackServer, data_dir: Path,
                                                                 tmp_path: Path) -> None:
    prices = load_prices()
    streamed = execute(run_config(data_dir, "openai:gpt-4o-mini", {"base_url": srv.base_url, "api_key_env": KEY_ENV}),
                       prices=prices, out=tmp_path / "stream", cache_path=tmp_path / "stream.sqlite", progress=False)
    chats = len(srv.state.bodies)
    batched = execute(run_config(data_dir, "openai-batch:gpt-4o-mini", batch_opts(srv, tmp_path / "state")),
                      prices=prices, out=tmp_path / "batch", cache_path=tmp_path / "batch.sqlite", progress=False)
    assert len(srv.state.bodies) == chats  # no chat call: all went through the batch
    assert (len(srv.state.uploads), len(srv.state.batch_creates), len(srv.state.batch_lines)) == (1, 1, N)
    assert srv.state.batch_creates[0] == {"input_file_id": srv.state.uploads[0], "endpoint": "/v1/chat/completions",
                                          "completion_window": "24h"}
    lines = uploaded_lines(srv, 0)
    assert {(x["method"], x["url"]) for x in lines} == {("POST", "/v1/chat/completions")}
    assert sorted(json.dumps(x["body"], sort_keys=True) for x in lines) == sorted(  # the same bodies as streamed
        json.dumps(b, sort_keys=True) for b in srv.state.bodies)

    fields = ("query_id", "answer", "correct", "status", "error")
    call_fields = ("input_tokens", "output_tokens", "cached_input_tokens", "finish_reason", "error")
    for s, b in zip(rows(tmp_path / "stream"), rows(tmp_path / "batch"), strict=True):
        assert {k: s[k] for k in fields} == {k: b[k] for k in fields}
        assert [{k: c[k] for k in call_fields} for c in s["calls"]] == [{k: c[k] for k in call_fields} for c in b["calls"]]
    s, b = streamed.summary, batched.summary
    assert s["correct"] == b["correct"] == N and b["errors"] == 0
    assert (s["llm_price"], b["llm_price"]) == ("gpt-4o-mini", "gpt-4o-mini@batch")
    price = prices.get("gpt-4o-mini@batch")
    assert b["cost_usd"] == pytest.approx(price.cost(b["llm_input_tokens"], b["llm_cached_input_tokens"],
                                                     b["llm_output_tokens"]))
    assert b["cost_usd"] == pytest.approx(s["cost_usd"] / 2) and b["cost_usd"] > 0
    manifest = json.loads((tmp_path / "batch" / "manifest.json").read_text())
    assert manifest["llm"]["identity"]["kind"] == "openai-batch" and manifest["llm"]["price"] == "gpt-4o-mini@batch"
    assert records(tmp_path / "state") == []  # nothing left in flight


@pytest.mark.parametrize("server_flavour", ["vllm", "openai"])
def test_prefixes_and_flavours_match_the_streaming_client(srv: OpenAILoopbackServer, tmp_path: Path,
                                                          table: dict[str, str], server_flavour: str) -> None:
    question, answer = next(iter(table.items()))
    requests = [GenRequest((Message("user", question),), 64), GenRequest((Message("user", question),), 64, prefix=answer[:20]),
                GenRequest((Message("user", question),), 64)]  # a duplicate: one line, two results
    stream = OpenAICompatBackend("m", OpenAISettings(base_url=srv.base_url, api_key_env=KEY_ENV, server=server_flavour))
    batch = OpenAIBatchBackend("m", BatchSettings(base_url=srv.base_url, api_key_env=KEY_ENV, server=server_flavour,
                                                  state_dir=str(tmp_path), poll_s=0.01))
    want = stream.generate(requests)
    handed: list[int] = []
    got = batch.generate(requests, on_result=lambda i, r: handed.append(i))
    assert sorted(handed) == [0, 1, 2] and len(uploaded_lines(srv, 0)) == 2
    keep = ("text", "input_tokens", "output_tokens", "finish_reason", "error", "prefix_mode")
    assert [{k: getattr(r, k) for k in keep} for r in got] == [{k: getattr(r, k) for k in keep} for r in want]
    assert got[1].prefix_mode == ("instructed" if server_flavour == "openai" else "")
    assert all(r.ok and r.latency_s >= 0 for r in got)


def test_partial_failure_is_an_error_per_request_never_graded(srv: OpenAILoopbackServer, data_dir: Path,
                                                              tmp_path: Path, table: dict[str, str]) -> None:
    questions = list(table)
    srv.inject_for(questions[1], Fault("status", status=500))
    srv.inject_for(questions[2], Fault("missing"))
    srv.inject_for(questions[3], Fault("status", status=429))
    res = execute(run_config(data_dir, "openai-batch:gpt-4o-mini", batch_opts(srv, tmp_path / "state")),
                  prices=load_prices(), out=tmp_path / "run", cache_path=tmp_path / "c.sqlite", progress=False)
    by_index = {r["index"]: r for r in rows(tmp_path / "run")}
    want = {1: "InternalServerError (HTTP 500): injected 500", 2: "BatchError (missing)",
            3: "RateLimitError (HTTP 429): injected 429"}
    for i, r in by_index.items():
        if i in want:
            assert r["status"] == "error" and r["correct"] is None and want[i] in r["error"], r
            assert r["calls"][0]["output_tokens"] == 0 and r["calls"][0]["input_tokens"] == 0
        else:
            assert (r["status"], r["correct"], r["error"]) == ("pass", True, None)
    s = res.summary
    assert (s["errors"], s["correct"]) == (3, N - 3)
    price = load_prices().get("gpt-4o-mini@batch")
    assert s["cost_usd"] == pytest.approx(price.cost(s["llm_input_tokens"], 0, s["llm_output_tokens"]))
    assert s["llm_output_tokens"] == sum(c["output_tokens"] for i, r in by_index.items() if i not in want
                                         for c in r["calls"])
    # errors are not cached: the same run again asks for those three only, in a new batch
    out = tmp_path / "again"
    again = execute(run_config(data_dir, "openai-batch:gpt-4o-mini", batch_opts(srv, tmp_path / "state")),
                    prices=load_prices(), out=out, cache_path=tmp_path / "c.sqlite", progress=False).summary
    assert len(srv.state.uploads) == 2 and len(uploaded_lines(srv, 1)) == 3
    assert (again["errors"], again["correct"], again["cached_calls"]) == (0, N, N - 3)


def test_an_expired_batch_keeps_what_ran_and_errs_the_rest(srv: OpenAILoopbackServer, tmp_path: Path,
                                                            table: dict[str, str]) -> None:
    srv.state.expire_after = 2
    requests = [GenRequest((Message("user", q),), 64) for q in table]
    cache = GenerationCache(tmp_path / "c.sqlite")
    backend = OpenAIBatchBackend("gpt-4o-mini", BatchSettings(base_url=srv.base_url, api_key_env=KEY_ENV,
                                                              state_dir=str(tmp_path / "state"), poll_s=0.01))
    got = CachedBackend(backend, cache).generate(requests)
    assert srv.state.batches["batch_1"]["status"] == "expired"
    assert [r.ok for r in got] == [True, True] + [False] * (N - 2)
    assert all("BatchError (batch_expired)" in (r.error or "") and r.output_tokens == 0 for r in got[2:])
    assert records(tmp_path / "state") == []
    srv.state.expire_after = None
    again = CachedBackend(backend, cache).generate(requests)
    assert all(r.ok for r in again) and [r.cached for r in again] == [True, True] + [False] * (N - 2)
    assert len(uploaded_lines(srv, 1)) == N - 2  # the finished two are never submitted again


def test_a_failed_batch_and_a_lost_one_are_errors(srv: OpenAILoopbackServer, tmp_path: Path) -> None:
    srv.state.fail_batches = "model not found"
    backend = OpenAIBatchBackend("gpt-4o-mini", BatchSettings(base_url=srv.base_url, api_key_env=KEY_ENV,
                                                              state_dir=str(tmp_path), poll_s=0.01))
    request = GenRequest((Message("user", "anything"),), 8)
    (res,) = backend.generate([request])
    assert res.error is not None and "BatchError (batch_failed)" in res.error and "model not found" in res.error
    assert records(tmp_path) == []
    # a record of a batch the server does not know: an error now, forgotten, submitted afresh next time
    backend.records().save(BatchJob("batch_404", (request_key(backend.identity, request),), time.time()))
    srv.state.fail_batches = None
    (lost,) = backend.generate([request])
    assert lost.error is not None and "NotFoundError (HTTP 404)" in lost.error and "gone" in lost.error
    assert records(tmp_path) == []
    (fresh,) = backend.generate([request])
    assert fresh.ok and len(srv.state.batch_creates) == 2


def test_transport_faults_on_the_batch_calls_are_retried(srv: OpenAILoopbackServer, tmp_path: Path) -> None:
    srv.inject(Fault("status", status=503, retry_after=0.01), Fault("reset"), Fault("status", status=429, retry_after=0.01))
    backend = OpenAIBatchBackend("gpt-4o-mini", BatchSettings(base_url=srv.base_url, api_key_env=KEY_ENV,
                                                              state_dir=str(tmp_path), poll_s=0.01, max_retries=3))
    (res,) = backend.generate([GenRequest((Message("user", "anything"),), 8)])
    assert res.ok and len(srv.state.uploads) == 1 and len(srv.state.batch_creates) == 1
    srv.inject(*[Fault("status", status=500, retry_after=0.01)] * 2)
    backend = OpenAIBatchBackend("gpt-4o-mini", BatchSettings(base_url=srv.base_url, api_key_env=KEY_ENV,
                                                              state_dir=str(tmp_path), max_retries=1))
    (res,) = backend.generate([GenRequest((Message("user", "other"),), 8)])
    assert res.error == "BatchError: batch not submitted (InternalServerError (HTTP 500): injected 500 (after 2 attempts))"


def test_a_local_batch_command_like_vllm_run_batch(srv: OpenAILoopbackServer, tmp_path: Path,
                                                   table: dict[str, str]) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(table))
    command = f"{sys.executable} {REPO / 'tests' / 'batch_runner.py'} --answers {answers}"
    local = make_backend("openai-batch:Qwen/Qwen2.5-7B-Instruct", "large",
                         {"command": command, "state_dir": str(tmp_path / "state"), **FAST})
    assert local.identity.base_url == "" and dict(local.identity.extra) == {"command": command}
    requests = [GenRequest((Message("user", q),), 64, prefix=a[:10] if i == 0 else "") for i, (q, a) in enumerate(table.items())]
    http = OpenAIBatchBackend("Qwen/Qwen2.5-7B-Instruct", BatchSettings(
        base_url=srv.base_url, api_key_env=KEY_ENV, state_dir=str(tmp_path / "http"), poll_s=0.01))
    keep = ("text", "input_tokens", "output_tokens", "finish_reason", "error", "prefix_mode")
    got, want = local.generate(requests), http.generate(requests)
    assert [{k: getattr(r, k) for k in keep} for r in got] == [{k: getattr(r, k) for k in keep} for r in want]
    assert all(r.ok for r in got) and records(tmp_path / "state") == []
    assert not any((tmp_path / "state").glob("*/jobs/*")), "finished job folders are removed"

    wrong_model = make_backend("openai-batch:other-model", "large",
                               {"command": f"{command} --model served-model", "state_dir": str(tmp_path / "s2"), **FAST})
    (res,) = wrong_model.generate(requests[1:2])
    assert res.error is not None and res.error.startswith("BadRequestError (HTTP 400)") and "does not exist" in res.error
    failing = make_backend("openai-batch:m", "large",
                           {"command": f"{command} --fail 'CUDA out of memory'", "state_dir": str(tmp_path / "s3"), **FAST})
    (res,) = failing.generate(requests[1:2])
    assert res.error is not None and "exit status 1" in res.error and "CUDA out of memory" in res.error


# --- through the CLI: a plain run, and kill -9 while the batch is in flight ---------------------------

def cli(srv: OpenAILoopbackServer, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shepherd_bench.cli", "run", "--task", "gsm8k", "--strategy", "llm",
            "--limit", "2", "--data-dir", str(data_dir), "--out", str(out), "--cache", str(out.parent / "cache.sqlite"),
            "--llm", "openai-batch:gpt-4o-mini", "--llm-opt", f"base_url={srv.base_url}",
            "--llm-opt", f"api_key_env={KEY_ENV}", "--llm-opt", "poll_s=0.01", "--llm-opt", "max_poll_s=0.05", *extra]


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, KEY_ENV: KEY, "SHEPHERD_BENCH_CACHE": str(tmp_path / "user-cache")}


def test_cli_run_through_the_batch_api(srv: OpenAILoopbackServer, data_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(cli(srv, data_dir, tmp_path / "run"), env=cli_env(tmp_path), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "LLM priced as gpt-4o-mini@batch" in proc.stdout and "errors 0" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["n"], summary["correct"], summary["llm_price"]) == (2, 2, "gpt-4o-mini@batch")
    assert len(srv.state.batch_creates) == 1
    assert (tmp_path / "user-cache" / "batches").is_dir()  # records kept beside the default cache, none left
    assert records(tmp_path / "user-cache" / "batches") == []
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or KEY.encode() not in p.read_bytes(), p
    assert KEY not in proc.stdout + proc.stderr


def test_a_killed_run_reattaches_to_its_batch(srv: OpenAILoopbackServer, data_dir: Path, tmp_path: Path) -> None:
    srv.state.hold_batches.clear()  # the batch stays in progress until the run is dead
    state = tmp_path / "user-cache" / "batches"
    proc = subprocess.Popen(cli(srv, data_dir, tmp_path / "run"), env=cli_env(tmp_path), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not records(state):
        assert proc.poll() is None and time.monotonic() < deadline, "the batch was never recorded"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert srv.state.batches["batch_1"]["status"] == "in_progress"
    recorded = json.loads(records(state)[0].read_text())
    assert recorded["batch_id"] == "batch_1" and len(recorded["custom_ids"]) == 2
    srv.state.hold_batches.set()

    again = subprocess.run(cli(srv, data_dir, tmp_path / "run", "--json"), env=cli_env(tmp_path), text=True,
                           capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["n"], summary["correct"], summary["errors"]) == (2, 2, 0)
    assert (len(srv.state.uploads), len(srv.state.batch_creates), len(srv.state.batch_lines)) == (1, 1, 2)
    assert records(state) == []
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or KEY.encode() not in p.read_bytes(), p


# --- pure units -------------------------------------------------------------------------------------

def test_batch_prices_are_half_and_a_missing_tier_is_an_error() -> None:
    table = load_prices()
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-5", "gpt-5-mini"):
        std, batch = table.get(name), table.get(f"{name}@batch")
        assert (batch.input, batch.cached_input, batch.output) == pytest.approx(
            (std.input / 2, std.cached_input / 2, std.output / 2)), name
        assert batch.name == f"{name}@batch"
    assert default_price("openai-batch:gpt-4o-mini", "large") == "gpt-4o-mini@batch"
    assert default_price("openai:gpt-4o-mini", "large") == "gpt-4o-mini"
    with pytest.raises(PriceError, match="no batch price for model 'llama-3.3-70b'"):
        table.get("llama-3.3-70b@batch")
    with pytest.raises(PriceError, match="no price for model 'my-model@batch'"):
        table.get("my-model@batch")


def test_options_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    b = make_backend("openai-batch:gpt-4o-mini", "large", {"api_key_env": KEY_ENV, "poll_s": "2", "server": "openai"})
    assert isinstance(b, OpenAIBatchBackend) and b.settings.poll_s == 2.0 and b.settings.flavour() == "openai"
    s = make_backend("openai:gpt-4o-mini", "large", {"api_key_env": KEY_ENV})
    assert b.identity.kind == "openai-batch" and b.identity.key() != s.identity.key()
    assert KEY not in repr(b.identity) + repr(vars(b.settings))
    assert BatchSettings(command="vllm run-batch").flavour() == "vllm"
    with pytest.raises(ConfigError, match="known: .*poll_s"):
        make_backend("openai-batch:m", "large", {"api_key_env": KEY_ENV, "pol_s": "1"})
    with pytest.raises(ConfigError, match="not both"):
        make_backend("openai-batch:m", "large", {"command": "vllm run-batch", "base_url": "http://x/v1"})
    with pytest.raises(ConfigError, match="needs a model name"):
        make_backend("openai-batch", "large", {})
    monkeypatch.delenv(KEY_ENV)
    make_backend("openai-batch:m", "large", {"command": "vllm run-batch", "api_key_env": KEY_ENV})  # no key needed


def test_polls_back_off_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit: a scripted service answers in_progress four times; the waits grow 1.5x up to max_poll_s."""
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = OpenAIBatchBackend("m", BatchSettings(api_key_env=KEY_ENV, poll_s=10, max_poll_s=20))
    statuses = iter(["validating", "in_progress", "in_progress", "finalizing", "completed"])

    class Scripted:
        async def retrieve(self, batch_id: str) -> dict[str, Any]:
            return {"id": batch_id, "status": next(statuses)}

    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    class Bar:
        def set_postfix_str(self, *a: Any, **k: Any) -> None:
            pass

    batch = asyncio.run(backend._wait(Scripted(), "b1", Bar()))  # type: ignore[arg-type]
    assert batch["status"] == "completed" and waits == [10, 15, 20, 20]


def test_result_lines_are_read_as_openai_and_vllm_write_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = OpenAIBatchBackend("m", BatchSettings(api_key_env=KEY_ENV))
    req = GenRequest((Message("user", "q"),), 8)
    ok = {"status_code": 200, "body": {"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}],
                                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}}}
    cases: list[tuple[dict[str, Any], GenResult]] = [
        ({"response": ok, "error": None}, GenResult("4", input_tokens=3, output_tokens=1, finish_reason="stop")),
        ({"response": {"status_code": 400, "body": None}, "error": "model `x` does not exist"},
         GenResult("", error="BadRequestError (HTTP 400): model `x` does not exist")),
        ({"response": None, "error": {"code": "batch_expired", "message": "late"}},
         GenResult("", error="BatchError (batch_expired): late")),
        ({"response": {"status_code": 401, "body": {"error": {"message": f"bad key {KEY}"}}}},
         GenResult("", error="AuthenticationError (HTTP 401): bad key ***")),
    ]
    for line, want in cases:
        got = backend._line_result(line, req, 0.0)
        assert (got.text, got.error, got.input_tokens, got.output_tokens) == (
            want.text, want.error, want.input_tokens, want.output_tokens), line


def test_a_grid_builds_its_llm_leg_through_the_batch_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid's LLM answers (text, token texts, usage) come through one batch on the loopback server and
    give the same grid, row for row, as the LLM called directly; a rebuild submits nothing."""
    import pandas as pd

    from shepherd_bench.backends.meter import MeteredBackend
    from shepherd_bench.research.grid import GridSpec, GridStore, build_grid, load_grid
    from shepherd_bench.strategies.base import ModelPair
    from tests.test_grid_build import LLM_TOKENS, PROMPT_TOKENS, ScriptedBackend, ScriptedTask

    def scripted_llm(body: dict[str, Any]) -> Completion:
        qid = body["messages"][-1]["content"]
        toks = tuple(f"L{i}|" for i in range(LLM_TOKENS[qid]))
        return Completion("".join(toks), PROMPT_TOKENS[qid], len(toks), tokens=toks, logprobs=(-0.25,) * len(toks))

    def grid(root: Path, large: Any) -> Any:
        task = ScriptedTask()
        store = GridStore(root)
        store.open({"kind": "hint-grid", "fingerprint": "fp"}, "fp")
        pair = ModelPair(MeteredBackend(ScriptedBackend("small"), "small"), MeteredBackend(large, "large"))
        build_grid(task, task.load().docs, pair, GridSpec(levels=(0.0, 3.0, 7.0), kind="tokens"), store)
        return load_grid(root)

    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAILoopbackServer(scripted_llm, api_key=KEY) as srv:
        backend = make_backend("openai-batch:gpt-4o-mini", "large", batch_opts(srv, tmp_path / "state"))
        batched = grid(tmp_path / "batch", backend)
        assert not srv.state.bodies and len(srv.state.batch_creates) == 1
        assert len(uploaded_lines(srv, 0)) == len(LLM_TOKENS)
        assert all(x["body"]["logprobs"] for x in uploaded_lines(srv, 0))  # the grid needs the token texts
        assert records(tmp_path / "state") == []
        direct = grid(tmp_path / "direct", ScriptedBackend("large"))
        keep = [c for c in direct.columns if "latency" not in c]
        assert len(batched) == len(direct) > len(LLM_TOKENS)
        pd.testing.assert_frame_equal(batched[keep], direct[keep])
        grid(tmp_path / "batch", backend)  # resumed: everything is in the grid already
        assert len(srv.state.batch_creates) == 1
