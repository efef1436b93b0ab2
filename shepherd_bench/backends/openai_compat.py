"""OpenAI-compatible chat client (OpenAI, ``vllm serve``, llama.cpp server) behind the Backend protocol.

Async with bounded concurrency (a semaphore), the SDK's own retries with backoff (it honours
``retry-after``), a per-request timeout, ``max_completion_tokens`` (falling back to ``max_tokens`` once,
for the rest of the backend's life, if a server rejects the former; the fallback is noted in
``notes``). Each result is handed to an optional ``on_result(index, result)`` callback as soon as it
arrives (the cache stores it at once, so a killed run never pays twice for a finished call). Usage
comes from the response; a response without usage or with empty content is an error
(never graded, never retried: an empty answer may already be billed). A truncated or malformed body,
which the SDK does not retry, is retried here on the SDK's schedule, ``max_retries`` times. Every
failure is recorded in ``GenResult.error``; the API key never appears in the identity, logs or errors.

Continuing an assistant prefix (a hint) depends on the server (``server`` option):

- ``vllm``: the prefix is a final assistant message and ``continue_final_message: true,
  add_generation_prompt: false`` go in the request body; the reply holds only the continuation.
- ``llamacpp``: llama.cpp's server continues a trailing assistant message by default (prefill).
- ``openai``: the OpenAI API has no continuation; a request with a prefix is recorded as an error.
- ``auto`` (default): ``openai`` without ``base_url``, else ``vllm`` (llama.cpp ignores the extra
  fields and continues anyway).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..config import ConfigError
from ..errors import UserError
from .base import BackendIdentity, GenRequest, GenResult, Role

log = logging.getLogger(__name__)
Server = Literal["auto", "openai", "vllm", "llamacpp"]
T = TypeVar("T")
ResultSink = Callable[[int, GenResult], None]


class MissingAPIKey(UserError, RuntimeError):
    """The environment variable holding the API key is not set; the message names it."""


@dataclass(frozen=True)
class OpenAISettings:
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    max_retries: int = 4
    timeout_s: float = 120.0
    server: Server = "auto"

    def flavour(self) -> Server:
        if self.server != "auto":
            return self.server
        return "openai" if not self.base_url else "vllm"


@dataclass
class _State:
    use_max_tokens: bool = False  # set once a server rejected max_completion_tokens
    notes: list[str] = field(default_factory=list)


class OpenAICompatBackend:
    streams_results = True  # generate() accepts on_result

    def __init__(self, model: str, settings: OpenAISettings | None = None) -> None:
        self.model = model
        self.settings = settings or OpenAISettings()
        if not self.settings.api_key_env.isidentifier():  # e.g. the key itself was passed: never echo it
            raise ConfigError("api_key_env must name an environment variable (e.g. api_key_env=MY_API_KEY), "
                              "not hold the key itself; export the key in that variable")
        key = os.environ.get(self.settings.api_key_env, "")
        if not key:
            raise MissingAPIKey(
                f"environment variable {self.settings.api_key_env} is not set; export it with your API key "
                f"(any non-empty value for a local server), or name another variable with api_key_env"
            )
        self._key = key
        self._state = _State()
        self._lock = threading.Lock()

    @property
    def identity(self) -> BackendIdentity:
        return BackendIdentity(kind="openai", model=self.model, base_url=self.settings.base_url or "")

    @property
    def notes(self) -> list[str]:
        """Protocol adaptations made on the way (e.g. the max_tokens fallback)."""
        return list(self._state.notes)

    def generate(self, requests: list[GenRequest], *, progress: bool = False,
                 on_result: ResultSink | None = None) -> list[GenResult]:
        if not requests:
            return []
        return _run_sync(self._agenerate(requests, progress, on_result))

    def close(self) -> None:
        pass

    async def _agenerate(self, requests: list[GenRequest], progress: bool,
                         on_result: ResultSink | None) -> list[GenResult]:
        from openai import AsyncOpenAI
        from tqdm import tqdm

        s = self.settings
        client = AsyncOpenAI(api_key=self._key, base_url=s.base_url, max_retries=s.max_retries, timeout=s.timeout_s)
        sem = asyncio.Semaphore(max(1, s.concurrency))
        bar = tqdm(total=len(requests), desc=f"openai {self.model}", disable=not progress, unit="req")

        async def one(i: int, r: GenRequest) -> GenResult:
            async with sem:
                res = await self._one(client, r)
            if on_result is not None:
                on_result(i, res)
            bar.update(1)
            return res

        try:
            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))
        finally:
            bar.close()
            await client.close()

    async def _one(self, client: Any, request: GenRequest) -> GenResult:
        t0 = time.perf_counter()
        flavour = self.settings.flavour()
        if request.prefix and flavour == "openai":
            return GenResult(text="", error="the OpenAI API cannot continue an assistant prefix; use server=vllm "
                             "or llamacpp, or put the hint in the user turn")
        retries = max(0, self.settings.max_retries)
        for attempt in range(retries + 1):
            try:
                resp = await self._create(client, request, flavour)
                break
            except ValueError as e:  # a truncated or malformed body (JSONDecodeError): the SDK does not retry it
                if attempt == retries:
                    return GenResult(text="", error=self._scrub(f"malformed response after {retries + 1} "
                                     f"attempts: {_describe(e)}"), latency_s=time.perf_counter() - t0)
                await asyncio.sleep(_backoff(attempt))
            except Exception as e:  # recorded, never raised (the SDK has already retried what it retries)
                return GenResult(text="", error=self._scrub(_describe(e)), latency_s=time.perf_counter() - t0)
        return _parse_chat(resp, request, time.perf_counter() - t0)

    async def _create(self, client: Any, request: GenRequest, flavour: Server) -> Any:
        from openai import BadRequestError

        kwargs = _chat_kwargs(self.model, request, flavour)
        if not self._state.use_max_tokens:
            try:
                return await client.chat.completions.create(**kwargs, max_completion_tokens=request.max_tokens)
            except BadRequestError as e:
                if "max_completion_tokens" not in str(e):
                    raise
                self._fall_back_to_max_tokens()
        return await client.chat.completions.create(**kwargs, max_tokens=request.max_tokens)

    def _fall_back_to_max_tokens(self) -> None:
        with self._lock:
            if not self._state.use_max_tokens:
                self._state.use_max_tokens = True
                note = f"{self.identity.short()}: server rejected max_completion_tokens; using max_tokens"
                self._state.notes.append(note)
                log.warning(note)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _chat_kwargs(model: str, request: GenRequest, flavour: Server) -> dict[str, Any]:
    messages: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in request.messages]
    extra: dict[str, Any] = {}
    if request.prefix:
        messages.append({"role": "assistant", "content": request.prefix})
        if flavour == "vllm":
            extra = {"continue_final_message": True, "add_generation_prompt": False}
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
    }
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.logprobs:
        kwargs["logprobs"] = True
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _parse_chat(resp: Any, request: GenRequest, latency: float) -> GenResult:
    usage = getattr(resp, "usage", None)
    choices = getattr(resp, "choices", None) or []
    if not choices:
        return GenResult(text="", error="response without choices", latency_s=latency)
    choice = choices[0]
    text = (choice.message.content if choice.message is not None else None) or ""
    finish = str(choice.finish_reason or "")
    base = {"finish_reason": finish, "latency_s": latency}
    if usage is None:
        return GenResult(text=text, error="response without usage (not graded)", **base)  # type: ignore[arg-type]
    details = getattr(usage, "prompt_tokens_details", None)
    counts = {
        "input_tokens": int(usage.prompt_tokens or 0),
        "output_tokens": int(usage.completion_tokens or 0),
        "cached_input_tokens": int(getattr(details, "cached_tokens", 0) or 0),
    }
    if not text:
        return GenResult(text="", error=f"empty completion (finish_reason={finish!r})", **counts, **base)  # type: ignore[arg-type]
    lp = getattr(getattr(choice, "logprobs", None), "content", None)
    return GenResult(
        text=text,
        token_logprobs=[float(t.logprob) for t in lp] if request.logprobs and lp else None,
        tokens=[str(t.token) for t in lp] if lp else None,
        **counts,  # type: ignore[arg-type]
        **base,  # type: ignore[arg-type]
    )


def _backoff(attempt: int) -> float:
    """The SDK's schedule: 0.5 s doubling per attempt, at most 8 s, minus up to 25% jitter."""
    return float(min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random()))


def _describe(e: BaseException) -> str:
    status = getattr(e, "status_code", None)
    msg = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}" + (f" (HTTP {status})" if status else "") + f": {msg}"


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, or a helper thread when the caller already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:
            box["error"] = e

    th = threading.Thread(target=target)
    th.start()
    th.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def make(model: str, role: Role, options: dict[str, Any]) -> OpenAICompatBackend:
    """OpenAI-compatible chat API (OpenAI, vllm serve, llama.cpp server): async, retries, usage."""
    if not model:
        raise ConfigError("the openai backend needs a model name, e.g. openai:gpt-4o-mini")
    from .options import settings_from_options

    return OpenAICompatBackend(model, settings_from_options("openai", OpenAISettings, options))
