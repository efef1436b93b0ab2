"""CPU local backend: GGUF models on llama.cpp through ``xllamacpp`` (an in-process llama.cpp server).

One server per (model file, settings) in the process, shared by every backend object that asks for it.
The server has ``n_parallel`` slots with continuous batching and prompt caching; ``generate`` submits
all requests at once from a thread pool (the bindings release the GIL), so the slots batch them.

Prompt building (the hint continuation): the server's own chat-template engine renders the messages
(``/apply-template``); when a request has a ``prefix``, it is sent as a trailing assistant message,
which llama.cpp renders as the generation prompt followed by the prefix text (assistant turn left
open). The rendered text is tokenized with ``add_special=False`` and the model's BOS token is put in
front only when the model wants one and the template did not already emit it, then sent as token ids:
no second BOS can sneak in. The returned text excludes the prefix; ``input_tokens`` counts the whole
prompt (prefix included) as the server reports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .base import BackendIdentity, GenRequest, GenResult, ResultSink, Role
from .models import DEFAULT_MODELS, ResolvedModel, resolve_model


@dataclass(frozen=True)
class LlamaCppSettings:
    n_parallel: int = 4  # server slots (sequences decoded together)
    n_ctx_per_slot: int = 4096  # prompt + max_tokens must fit in one slot
    n_threads: int = 0  # 0: all cores
    n_batch: int = 512
    logprobs_top: int = 1  # always ask for 1 so the output token ids come back
    # Reuse a slot's cached prompt prefix. On CPU the numerics of a reused prefix can differ in the last
    # bits from a fresh prefill, so with it on, outputs can depend on what ran before; turn it off (and
    # use one slot) for bit-for-bit reproducibility across differently ordered runs.
    cache_prompt: bool = True
    # Speculative decoding: a smaller model of the same tokenizer (a known name or a .gguf path) drafts up
    # to ``draft_max`` tokens that this model verifies in one batch. Exact in exact arithmetic, but on CPU
    # the batched verification changes low-order float sums, so some greedy texts differ from plain
    # decoding: the identity (the cache namespace) names the draft. benchmarks/bench_grid.py
    # --speculative measures speed and agreement against plain decoding.
    draft_model: str = ""
    draft_max: int = 16
    draft_min: int = 0

    def threads(self) -> int:
        return self.n_threads or (os.cpu_count() or 1)


class _Engine:
    """One xllamacpp server and the model facts the prompt builder needs."""

    def __init__(self, model: ResolvedModel, settings: LlamaCppSettings) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model.path)
        params.n_parallel = settings.n_parallel
        params.n_ctx = settings.n_ctx_per_slot * settings.n_parallel
        params.n_batch = settings.n_batch
        params.cpuparams.n_threads = settings.threads()
        params.cpuparams_batch.n_threads = settings.threads()
        params.ctx_shift = False  # never drop prompt tokens silently
        params.warmup = False
        params.verbosity = 0
        self.draft_sha256 = ""
        if settings.draft_model:
            draft = resolve_model(settings.draft_model, progress=False)
            self.draft_sha256 = draft.sha256
            spec = params.speculative
            spec.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
            spec.draft.mparams.path = str(draft.path)
            spec.draft.n_max = settings.draft_max
            spec.draft.n_min = settings.draft_min
            spec.draft.cpuparams.n_threads = settings.threads()
            spec.draft.cpuparams_batch.n_threads = settings.threads()
        self.model = model
        self.settings = settings
        self.server = xllamacpp.Server(params)
        self.base_url = str(self.server.listening_address).rstrip("/")
        props = self._get("/props")
        self.chat_template: str = props.get("chat_template") or ""
        self.bos_token: str = props.get("bos_token") or ""
        self.bos_id: list[int] = self.tokenize("", add_special=True)  # [] when the model adds no BOS

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + path, timeout=60) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    def render(self, request: GenRequest) -> str:
        """Chat template over the messages; with a prefix the assistant turn is left open after it."""
        msgs = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.prefix:
            msgs.append({"role": "assistant", "content": request.prefix})
        return str(self._post("/apply-template", {"messages": msgs})["prompt"])

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        body = {"content": text, "add_special": add_special, "parse_special": True}
        return [int(t) for t in self._post("/tokenize", body)["tokens"]]

    def prompt_ids(self, request: GenRequest) -> list[int]:
        ids = self.tokenize(self.render(request), add_special=False)
        if self.bos_id and ids[: len(self.bos_id)] != self.bos_id:
            ids = self.bos_id + ids
        return ids

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.server.handle_completions(body)
        return out

    def close(self) -> None:
        del self.server


_ENGINES: dict[tuple[str, LlamaCppSettings], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(model: ResolvedModel, settings: LlamaCppSettings) -> _Engine:
    key = (str(model.path), settings)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = _Engine(model, settings)
        return _ENGINES[key]


class LlamaCppBackend:
    """Backend over a shared in-process llama.cpp server; per-request failures become ``GenResult.error``."""

    streams_results = True  # generate() accepts on_result

    def __init__(self, model: str, settings: LlamaCppSettings | None = None, *, progress: bool = True) -> None:
        self.model_spec = model
        self.settings = settings or LlamaCppSettings()
        self._progress = progress
        self._resolved: ResolvedModel | None = None
        self._engine: _Engine | None = None

    def prepare(self) -> None:
        """Find, fetch if needed and verify the model file (sha256), without loading it."""
        if self._resolved is None:
            self._resolved = resolve_model(self.model_spec, progress=self._progress)

    def engine(self) -> _Engine:
        if self._engine is None:
            if self._resolved is None:
                self._resolved = resolve_model(self.model_spec, progress=self._progress)
            self._engine = _engine(self._resolved, self.settings)
        return self._engine

    @property
    def identity(self) -> BackendIdentity:
        eng = self.engine()
        st = self.settings
        extra = (("draft_model", eng.draft_sha256), ("draft_max", str(st.draft_max)),
                 ("draft_min", str(st.draft_min))) if st.draft_model else ()
        return BackendIdentity(
            kind="llamacpp",
            model=eng.model.name,
            revision=eng.model.sha256,
            chat_template_sha256=hashlib.sha256(eng.chat_template.encode()).hexdigest(),
            extra=extra,
        )

    def render_prompt(self, request: GenRequest) -> list[int]:
        """The exact token ids sent for ``request`` (exposed for tests and debugging)."""
        return self.engine().prompt_ids(request)

    def detokenize(self, ids: list[int]) -> str:
        return str(self.engine()._post("/detokenize", {"tokens": ids})["content"])

    def generate(self, requests: list[GenRequest], *, progress: bool = False,
                 on_result: ResultSink | None = None) -> list[GenResult]:
        if not requests:
            return []
        from tqdm import tqdm

        eng = self.engine()
        workers = min(len(requests), eng.settings.n_parallel + 1)
        with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
            total=len(requests), desc=f"llamacpp {eng.model.name}", disable=not progress, unit="req"
        ) as bar:

            def run(i: int, r: GenRequest) -> GenResult:
                res = _generate_one(eng, r)
                if on_result is not None:
                    on_result(i, res)
                bar.update(1)
                return res

            return list(pool.map(run, range(len(requests)), requests))

    def close(self) -> None:
        self._engine = None  # the shared server stays up for other users in this process


def _generate_one(eng: _Engine, request: GenRequest) -> GenResult:
    t0 = time.perf_counter()
    try:
        ids = eng.prompt_ids(request)
        limit = eng.settings.n_ctx_per_slot
        if len(ids) + request.max_tokens > limit:
            need = -(-(len(ids) + request.max_tokens) // 1024) * 1024
            return GenResult(
                text="",
                input_tokens=len(ids),
                error=f"prompt ({len(ids)} tokens) + max_tokens ({request.max_tokens}) exceeds the slot context "
                f"({limit}); raise it: --llm-opt n_ctx_per_slot={need} (--slm-opt for the SLM)",
                latency_s=time.perf_counter() - t0,
            )
        resp = eng.complete(_completion_body(ids, request, eng.settings))
    except Exception as e:  # a failed request is recorded, never raised
        return GenResult(text="", error=f"{type(e).__name__}: {e}", latency_s=time.perf_counter() - t0)
    return _parse_completion(resp, request, time.perf_counter() - t0)


def _completion_body(ids: list[int], request: GenRequest, settings: LlamaCppSettings) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": ids,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "logprobs": max(1, settings.logprobs_top),
        "cache_prompt": settings.cache_prompt,
    }
    if request.temperature > 0:
        body.update({"top_k": 0, "min_p": 0.0})  # plain temperature/top-p sampling, as on other backends
    if request.stop:
        body["stop"] = list(request.stop)
    return body


def _parse_completion(resp: dict[str, Any], request: GenRequest, latency: float) -> GenResult:
    if "error" in resp or not resp.get("choices"):
        err = resp.get("error", resp)
        msg = err.get("message", err) if isinstance(err, dict) else err
        return GenResult(text="", error=f"llama.cpp: {msg}", latency_s=latency)
    choice = resp["choices"][0]
    usage = resp.get("usage") or {}
    content = (choice.get("logprobs") or {}).get("content") or []
    details = usage.get("prompt_tokens_details") or {}
    return GenResult(
        text=choice.get("text") or "",
        input_tokens=int(usage.get("prompt_tokens", 0)),
        output_tokens=int(usage.get("completion_tokens", 0)),
        cached_input_tokens=int(details.get("cached_tokens", 0)),
        finish_reason=str(choice.get("finish_reason") or ""),
        latency_s=latency,
        token_ids=[int(t["id"]) for t in content] if content else None,
        tokens=[str(t.get("token", "")) for t in content] if content else None,
        token_logprobs=[float(t["logprob"]) for t in content] if request.logprobs and content else None,
    )


def make(model: str, role: Role, options: dict[str, Any]) -> LlamaCppBackend:
    """llama.cpp on CPU (xllamacpp): GGUF models, parallel slots, prompt caching."""
    from .options import settings_from_options

    opts = dict(options)
    progress = str(opts.pop("progress", True)).lower() not in {"0", "false", "no"}
    settings = settings_from_options("llamacpp", LlamaCppSettings, opts)
    return LlamaCppBackend(model or DEFAULT_MODELS[role], settings, progress=progress)
