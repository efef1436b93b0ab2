"""OpenAI-compatible chat client (OpenAI, ``vllm serve``, llama.cpp server) behind the Backend protocol.

Plain HTTP on aiohttp, one event loop, bounded concurrency (a semaphore), a per-request timeout and
``max_completion_tokens`` (falling back to ``max_tokens`` once, for the rest of the backend's life, if a
server rejects the former; the fallback is noted in ``notes``). The OpenAI SDK is not used on this path:
its per-call parameter transform and response models cost 2-4 ms of CPU per request, which bounds
throughput at high concurrency (benchmarks/bench_llm_client.py); vLLM's own benchmark client makes the
same choice. Retries follow the SDK's policy: 408, 409, 429 and 5xx statuses, connection errors,
timeouts and truncated or malformed bodies are retried up to ``max_retries`` times, after the server's
``retry-after-ms`` / ``retry-after`` when given (up to 60 s), else 0.5 s doubling to at most 8 s minus up
to 25% jitter; ``x-should-retry`` overrides. Errors are named as the SDK names them
(``RateLimitError (HTTP 429): ...``, ``APIConnectionError``, ``APITimeoutError``).

The Batch API backend (:mod:`.openai_batch`) builds on the same pieces: request bodies (``_chat_body``),
reply parsing (``reply_result``), HTTP calls with these error names and retries (``send``,
``with_retries``) and the key handling.

Each result is handed to an optional ``on_result(index, result)`` callback as soon as it arrives (the
cache stores it at once, so a killed run never pays twice for a finished call). Usage comes from the
response; a response without usage or with empty content is an error (never graded, never retried: an
empty answer may already be billed). Every failure is recorded in ``GenResult.error``; the API key
never appears in the identity, logs or errors.

Continuing an assistant prefix (a hint) depends on the server (``server`` option):

- ``vllm``: the prefix is a final assistant message and ``continue_final_message: true,
  add_generation_prompt: false`` go in the request body; the reply holds only the continuation.
- ``llamacpp``: llama.cpp's server continues a trailing assistant message by default (prefill).
- ``openai``: the OpenAI API has no continuation; a request with a prefix asks for the rest only: the
  last user turn gets ``CONTINUE_INSTRUCTION`` with the prefix quoted, and the result is marked
  ``prefix_mode="instructed"`` (strategies record it in their decision). The reply is taken as what
  follows the prefix, as a continued turn's would be.
- ``auto`` (default): ``openai`` without ``base_url``, else ``vllm`` (llama.cpp ignores the extra
  fields and continues anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .. import __version__
from ..config import ConfigError
from ..errors import UserError
from .base import BackendIdentity, GenRequest, GenResult, ResultSink, Role

log = logging.getLogger(__name__)
Server = Literal["auto", "openai", "vllm", "llamacpp"]
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_STATUS_ERRORS = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                  404: "NotFoundError", 409: "ConflictError", 422: "UnprocessableEntityError",
                  429: "RateLimitError"}
T = TypeVar("T")


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
        self._key = self._load_key()
        self._state = _State()
        self._lock = threading.Lock()

    def _load_key(self) -> str:
        if not self.settings.api_key_env.isidentifier():  # e.g. the key itself was passed: never echo it
            raise ConfigError("api_key_env must name an environment variable (e.g. api_key_env=MY_API_KEY), "
                              "not hold the key itself; export the key in that variable")
        key = os.environ.get(self.settings.api_key_env, "")
        if not key:
            raise MissingAPIKey(
                f"environment variable {self.settings.api_key_env} is not set; export it with your API key "
                f"(any non-empty value for a local server), or name another variable with api_key_env"
            )
        return key

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
        from tqdm import tqdm

        s = self.settings
        sem = asyncio.Semaphore(max(1, s.concurrency))
        bar = tqdm(total=len(requests), desc=f"openai {self.model}", disable=not progress, unit="req")
        session = self._session({"Content-Type": "application/json"})

        async def one(i: int, r: GenRequest) -> GenResult:
            async with sem:
                res = await self._one(session, r)
            if on_result is not None:
                on_result(i, res)
            bar.update(1)
            return res

        try:
            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))
        finally:
            bar.close()
            await session.close()

    async def _one(self, session: Any, request: GenRequest) -> GenResult:
        t0 = time.perf_counter()
        flavour = self.settings.flavour()
        body = _chat_body(self.model, request, flavour)

        async def call() -> GenResult:
            while True:
                tokens_key = "max_tokens" if self._state.use_max_tokens else "max_completion_tokens"
                try:
                    resp = await self._post(session, {**body, tokens_key: request.max_tokens})
                    return reply_result(resp, request, flavour, time.perf_counter() - t0)
                except APIError as e:
                    if e.status == 400 and tokens_key == "max_completion_tokens" and "max_completion_tokens" in e.message:
                        self._fall_back_to_max_tokens()  # a protocol adaptation, not a retry
                        continue
                    raise

        try:
            return await with_retries(call, max(0, self.settings.max_retries))
        except APIError as e:
            return GenResult(text="", error=self._scrub(_describe(e)), latency_s=time.perf_counter() - t0)

    def _session(self, headers: dict[str, str] | None = None) -> Any:
        """An aiohttp session that sends the key, bounded to ``concurrency`` connections."""
        import aiohttp

        s = self.settings
        headers = {"Authorization": f"Bearer {self._key}", "User-Agent": f"shepherd-bench/{__version__}",
                   **(headers or {})}
        connector = aiohttp.TCPConnector(limit=max(1, s.concurrency))
        return aiohttp.ClientSession(headers=headers, connector=connector, trust_env=True,
                                     timeout=aiohttp.ClientTimeout(total=s.timeout_s))

    def _url(self, path: str) -> str:
        return (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/") + path

    async def _post(self, session: Any, body: dict[str, Any]) -> dict[str, Any]:
        """One POST /chat/completions; the parsed JSON object, or ``APIError`` / ``ValueError`` (bad body)."""
        return json_object(await send(session, "POST", self._url("/chat/completions"), data=json.dumps(body)))

    def _fall_back_to_max_tokens(self) -> None:
        with self._lock:
            if not self._state.use_max_tokens:
                self._state.use_max_tokens = True
                note = f"{self.identity.short()}: server rejected max_completion_tokens; using max_tokens"
                self._state.notes.append(note)
                log.warning(note)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


class APIError(Exception):
    """A failed call, named as the OpenAI SDK names it; ``retryable`` per the SDK's policy."""

    def __init__(self, name: str, status: int | None, message: str, retryable: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.name, self.status, self.message = name, status, message
        self.retryable, self.retry_after = retryable, retry_after


async def send(session: Any, method: str, url: str, **kw: Any) -> str:
    """One HTTP request; the response text, or ``APIError`` named as the SDK names it."""
    import aiohttp

    try:
        async with session.request(method, url, **kw) as r:
            text = await r.text()
            status, headers = r.status, r.headers
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise APIError("APITimeoutError", None, "Request timed out.", True) from None
    except aiohttp.ClientError as e:
        raise APIError("APIConnectionError", None, f"Connection error: {type(e).__name__}: {e}", True) from None
    if status >= 400:
        raise APIError(status_name(status), status, _error_message(text), _should_retry(status, headers),
                       _retry_after(headers))
    return str(text)


def json_object(text: str) -> dict[str, Any]:
    """A response body that must be a JSON object; ``ValueError`` otherwise."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


async def with_retries(call: Callable[[], Awaitable[T]], retries: int) -> T:
    """``await call()``, retried as the SDK retries (retryable ``APIError``, a malformed body) up to
    ``retries`` times; the last failure is raised as an ``APIError``."""
    attempt = 0
    while True:
        try:
            return await call()
        except APIError as e:
            failure, wait = e, e.retry_after
        except ValueError as e:
            failure, wait = APIError("APIResponseValidationError", None, f"malformed response: {e}", True), None
        if not failure.retryable or attempt >= retries:
            if attempt:
                failure.message += f" (after {attempt + 1} attempts)"
            raise failure
        await asyncio.sleep(wait if wait is not None and 0 < wait <= 60 else _backoff(attempt))
        attempt += 1


def status_name(status: int) -> str:
    """The SDK's error class for an HTTP status (``RateLimitError`` for 429, ...)."""
    return _STATUS_ERRORS.get(status, "InternalServerError" if status >= 500 else "APIStatusError")


def _should_retry(status: int, headers: Any) -> bool:
    override = str(headers.get("x-should-retry", "")).lower()
    if override in ("true", "false"):
        return override == "true"
    return status in (408, 409, 429) or status >= 500


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if the server sent one."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        import email.utils

        try:
            return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    err = data.get("error") if isinstance(data, dict) else None
    msg = err.get("message") if isinstance(err, dict) else err
    return str(msg if msg else data)[:500]


CONTINUE_INSTRUCTION = (
    "\n\nThe beginning of your answer is already written, between <answer_start> tags below. Reply with "
    "only the text that comes after it, continuing exactly where it stops; do not repeat any of it.\n\n"
    "<answer_start>\n{prefix}\n</answer_start>"
)


def instructed_messages(messages: list[dict[str, str]], prefix: str) -> list[dict[str, str]]:
    """``messages`` with the last user turn asking for what follows ``prefix`` (a server that cannot
    continue an assistant turn)."""
    out = [dict(m) for m in messages]
    last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    if last is None:
        out.append({"role": "user", "content": CONTINUE_INSTRUCTION.format(prefix=prefix).lstrip()})
    else:
        out[last]["content"] += CONTINUE_INSTRUCTION.format(prefix=prefix)
    return out


def _chat_body(model: str, request: GenRequest, flavour: Server) -> dict[str, Any]:
    messages: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.prefix and flavour == "openai":
        messages = instructed_messages(messages, request.prefix)
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": request.temperature,
                            "top_p": request.top_p}
    if request.prefix and flavour != "openai":
        messages.append({"role": "assistant", "content": request.prefix})
        if flavour == "vllm":
            body.update(continue_final_message=True, add_generation_prompt=False)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.logprobs:
        body["logprobs"] = True
    return body


def reply_result(resp: dict[str, Any], request: GenRequest, flavour: Server, latency: float) -> GenResult:
    """A chat-completions response as a result; a prefix the ``openai`` flavour asked for in the user
    turn is marked ``instructed``."""
    res = _parse_chat(resp, request, latency)
    if request.prefix and flavour == "openai":
        res.prefix_mode = "instructed"
    return res


def _parse_chat(resp: dict[str, Any], request: GenRequest, latency: float) -> GenResult:
    choices = resp.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return GenResult(text="", error="response without choices", latency_s=latency)
    choice = choices[0]
    text = str((choice.get("message") or {}).get("content") or "")
    finish = str(choice.get("finish_reason") or "")
    usage = resp.get("usage")
    if not isinstance(usage, dict):
        return GenResult(text=text, error="response without usage (not graded)", finish_reason=finish,
                         latency_s=latency)
    details = usage.get("prompt_tokens_details") or {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached_in = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    if not text:
        return GenResult(text="", error=f"empty completion (finish_reason={finish!r})", finish_reason=finish,
                         latency_s=latency, input_tokens=tokens_in, output_tokens=tokens_out,
                         cached_input_tokens=cached_in)
    lp = (choice.get("logprobs") or {}).get("content") or None
    return GenResult(
        text=text,
        token_logprobs=[float(t["logprob"]) for t in lp] if request.logprobs and lp else None,
        tokens=[str(t["token"]) for t in lp] if lp else None,
        finish_reason=finish,
        latency_s=latency,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_input_tokens=cached_in,
    )


def _backoff(attempt: int) -> float:
    """The SDK's schedule: 0.5 s doubling per attempt, at most 8 s, minus up to 25% jitter."""
    return float(min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random()))


def _describe(e: BaseException) -> str:
    if isinstance(e, APIError):
        return e.name + (f" (HTTP {e.status})" if e.status else "") + f": {e.message}"
    return f"{type(e).__name__}: {e}"


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
