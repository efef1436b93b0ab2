"""The OpenAI-compatible client against a real loopback HTTP server backed by the real 0.5B model."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from openai_server import Fault, OpenAILoopbackServer, backend_generator

from shepherd_bench.backends.base import GenRequest, Message
from shepherd_bench.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
from shepherd_bench.backends.models import KNOWN_MODELS, models_dir
from shepherd_bench.backends.openai_compat import OpenAICompatBackend, OpenAISettings

KEY = "sk-test-DO-NOT-LEAK-4242"
Q = (Message("user", "What is 2 + 3? Reply with the number only."),)
SMALL = KNOWN_MODELS["qwen2.5-coder-0.5b"]


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAILoopbackServer]:
    if not (models_dir() / SMALL.filename).is_file():
        pytest.skip(f"{SMALL.filename} not in {models_dir()}")
    real = LlamaCppBackend(SMALL.name, LlamaCppSettings(n_parallel=2, n_ctx_per_slot=1024), progress=False)
    with OpenAILoopbackServer(backend_generator(real), api_key=KEY) as srv:
        yield srv


@pytest.fixture()
def client(server: OpenAILoopbackServer, monkeypatch: pytest.MonkeyPatch) -> OpenAICompatBackend:
    server.reset()
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    settings = OpenAISettings(base_url=server.base_url, api_key_env="TEST_LLM_KEY", max_retries=2, timeout_s=30)
    return OpenAICompatBackend("qwen-loopback", settings)


def _req(**kw: object) -> GenRequest:
    return GenRequest(Q, **{"max_tokens": 6, **kw})  # type: ignore[arg-type]


def test_usage_is_taken_from_the_response(client: OpenAICompatBackend, server: OpenAILoopbackServer) -> None:
    (res,) = client.generate([_req()])
    assert res.ok and "5" in res.text
    assert res.input_tokens > 10 and 0 < res.output_tokens <= 6 and res.latency_s > 0
    assert server.state.bodies[0]["max_completion_tokens"] == 6 and "max_tokens" not in server.state.bodies[0]


def test_prefix_goes_as_a_final_assistant_message(client: OpenAICompatBackend, server: OpenAILoopbackServer) -> None:
    add = (Message("user", "Write a Python function add(a, b) that returns the sum of a and b."),)
    (res,) = client.generate([GenRequest(add, max_tokens=4, prefix="def add(a, b):\n    return")])
    body = server.state.bodies[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "def add(a, b):\n    return"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert res.ok and res.text.replace(" ", "").startswith("a+b")


def test_concurrency_is_bounded(server: OpenAILoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    c = OpenAICompatBackend("m", OpenAISettings(base_url=server.base_url, api_key_env="TEST_LLM_KEY", concurrency=3))
    server.inject(*[Fault("delay", delay_s=0.4)] * 8)
    res = c.generate([_req(max_tokens=1)] * 8, progress=True)
    assert all(r.ok for r in res)
    assert server.state.max_in_flight == 3


def test_429_is_retried_then_succeeds(client: OpenAICompatBackend, server: OpenAILoopbackServer) -> None:
    server.inject(Fault("status", status=429, retry_after=0.05), Fault("status", status=503, retry_after=0.05))
    (res,) = client.generate([_req(max_tokens=2)])
    assert res.ok and len(server.state.bodies) == 3


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("status", status=500), "InternalServerError (HTTP 500)"),
        (Fault("status", status=400), "BadRequestError (HTTP 400)"),
        (Fault("malformed"), ""),
        (Fault("no_usage"), "without usage"),
        (Fault("empty"), "empty completion"),
        (Fault("reset"), "APIConnectionError"),
    ],
)
def test_failures_are_recorded_as_errors(
    server: OpenAILoopbackServer, monkeypatch: pytest.MonkeyPatch, fault: Fault, message: str
) -> None:
    server.reset()
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    c = OpenAICompatBackend("m", OpenAISettings(base_url=server.base_url, api_key_env="TEST_LLM_KEY", max_retries=0))
    server.inject(fault)
    (res,) = c.generate([_req(max_tokens=2)])
    assert not res.ok and message in (res.error or ""), res.error
    assert KEY not in (res.error or "")


def test_max_tokens_fallback_is_noted(client: OpenAICompatBackend, server: OpenAILoopbackServer) -> None:
    server.state.reject_max_completion_tokens = True
    a, b = client.generate([_req(max_tokens=2)]), client.generate([_req(max_tokens=2)])
    assert a[0].ok and b[0].ok
    assert [("max_tokens" in x, "max_completion_tokens" in x) for x in server.state.bodies] == [
        (False, True), (True, False), (True, False)
    ]
    assert client.notes and "max_tokens" in client.notes[0]


def test_the_key_never_leaks(
    server: OpenAILoopbackServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.reset()
    monkeypatch.setenv("TEST_LLM_KEY", "sk-wrong-key-777")
    c = OpenAICompatBackend("m", OpenAISettings(base_url=server.base_url, api_key_env="TEST_LLM_KEY", max_retries=0))
    (res,) = c.generate([_req(max_tokens=2)])
    assert "AuthenticationError (HTTP 401)" in (res.error or "")
    dumped = repr(c.identity) + repr(res) + caplog.text + repr(vars(c.settings))
    assert "sk-wrong-key-777" not in dumped


def test_openai_flavour_asks_for_the_rest_of_a_prefix(server: OpenAILoopbackServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The OpenAI API cannot continue an assistant turn: the user turn asks for what follows the prefix,
    no assistant message is sent, and the result says the prefix was instructed, not prefilled."""
    server.reset()
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    c = OpenAICompatBackend("m", OpenAISettings(base_url=server.base_url, api_key_env="TEST_LLM_KEY",
                                                server="openai", max_retries=0))
    add = (Message("user", "Write a Python function add(a, b) that returns the sum of a and b."),)
    prefix = "def add(a, b):\n"
    (res,) = c.generate([GenRequest(add, max_tokens=24, prefix=prefix)])
    body = server.state.bodies[0]
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert "continue_final_message" not in body
    assert body["messages"][0]["content"].startswith(add[0].content)
    assert "<answer_start>\n" + prefix in body["messages"][0]["content"]
    assert res.ok and res.prefix_mode == "instructed" and "a + b" in res.text.replace("a+b", "a + b")


