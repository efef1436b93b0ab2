"""GPU smoke check of the vLLM in-process backend (< 5 minutes on one GPU with a small model).

    python scripts/vllm_gpu_smoke.py [MODEL]   # a local path or hub id; default Qwen/Qwen2.5-0.5B-Instruct

Checks: one engine for the process (a second backend object reuses it), a batch in one call, greedy
determinism, hint continuation from an open assistant turn (the prefix is not repeated, exactly one
BOS/start token where the template wants it), max_tokens honoured, logprobs returned. Exits non-zero
on the first failed check.
"""

from __future__ import annotations

import argparse
import sys
import time

from shepherd_bench.backends.base import GenRequest, Message
from shepherd_bench.backends.vllm_backend import VLLMBackend, VLLMSettings, build_prompt_ids

ADD = (Message("user", "Write a Python function add(a, b) that returns the sum of a and b."),)
HINT = "def add(a, b):\n    return"


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="Qwen/Qwen2.5-0.5B-Instruct")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    settings = VLLMSettings(gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=4096)
    backend = VLLMBackend(args.model, settings)
    ident = backend.identity
    print(f"engine up in {time.perf_counter() - t0:.0f}s: {ident}", flush=True)
    check(VLLMBackend(args.model, settings).llm() is backend.llm(), "one engine per process")

    tok = backend.llm().get_tokenizer()
    hinted = GenRequest(ADD, max_tokens=8, prefix=HINT, logprobs=True)
    ids = build_prompt_ids(tok, hinted)
    text = tok.decode(ids)
    check(text.rstrip().endswith(HINT.rstrip()), "prompt ends with the hint (assistant turn open)")
    bos = getattr(tok, "bos_token_id", None)
    check(bos is None or ids.count(bos) <= 1, f"no doubled BOS (bos={bos})")

    math = (Message("user", "What is 17 + 25? Reply with the number only."),)
    batch = [GenRequest(ADD, max_tokens=32), hinted, GenRequest(math, max_tokens=8), GenRequest(ADD, max_tokens=32)]
    t1 = time.perf_counter()
    res = backend.generate(batch)
    print(f"batch of {len(batch)} in {time.perf_counter() - t1:.2f}s", flush=True)
    for r in res:
        print("   ", repr(r.text[:80]), r.input_tokens, r.output_tokens, r.finish_reason, r.error)
    check(all(r.ok for r in res), "every request succeeded")
    check(res[0].text == res[3].text, "greedy decoding is deterministic within a batch")
    check(all(r.output_tokens <= q.max_tokens for r, q in zip(res, batch, strict=True)), "max_tokens honoured")
    check(not res[1].text.lstrip().startswith("def add"), "the hint is continued, not repeated")
    check(res[1].text.replace(" ", "").startswith("a+b"), f"continuation is sensible: {res[1].text[:20]!r}")
    check(res[1].input_tokens == len(ids), "input tokens = the rendered prompt incl. the hint")
    check(res[1].token_logprobs is not None and len(res[1].token_logprobs) == res[1].output_tokens, "logprobs")
    check("42" in res[2].text, "batch answers are per request (17 + 25 = 42)")
    (again,) = backend.generate([batch[1]])
    check(again.text == res[1].text, "a repeated prompt gives the same text")
    print(f"info: cached input tokens on the repeat: {again.cached_input_tokens} (prefix caching)")
    print(f"all checks passed in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
