"""Hint-grid generation: one batched ``generate`` per level vs a naive loop of one request at a time.

Same model (the 0.5B on llama.cpp), same prompts, same process. The batched run goes first, so the naive
loop gets any warm prompt cache (a conservative ratio). Prints wall times, the speed ratio, prefill
tokens reused (``cached_input_tokens`` as the server reports it) and how many outputs differ.

    python benchmarks/bench_grid.py --queries 20 --levels 11 --max-tokens 32

``--speculative``: the grid's other cost, the LLM's answers. The 1.5B's greedy GSM8K answers decoded
plainly, then speculatively with the 0.5B as draft (llama.cpp's draft model, ``draft_max`` tokens per
step), same prompts, same slots, same process; prints both wall times, the speed ratio and how many
texts are identical.

    python benchmarks/bench_grid.py --speculative --queries 8 --max-tokens 512
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from shepherd_bench.backends.base import GenRequest, GenResult
from shepherd_bench.research.grid import GridSpec, hint_size, hint_text, slm_request

MODEL = "qwen2.5-coder-0.5b"  # resolved (and fetched if needed) like any model spec
LLM = "qwen2.5-coder-1.5b"


def timed(fn: object) -> tuple[float, list[GenResult]]:
    t0 = time.perf_counter()
    out = fn()  # type: ignore[operator]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--levels", type=int, default=11, help="fractions 0, 1/(L-1), ..., 1 (1.0 needs no SLM call)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=8, help="llama.cpp slots")
    ap.add_argument("--model", default=MODEL, help="model name or .gguf path")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SHEPHERD_BENCH_DATA", "../shared/data")))
    ap.add_argument("--speculative", action="store_true", help="LLM answers: plain vs speculative decoding")
    ap.add_argument("--draft-max", type=int, default=16, help="draft tokens per step (--speculative)")
    a = ap.parse_args()
    if a.speculative:
        speculative(a)
        return

    from shepherd_bench.backends import make_backend
    from shepherd_bench.tasks import get_task
    from shepherd_bench.tasks.gsm8k import GSM8K

    GSM8K.max_tokens = a.max_tokens
    task = get_task("gsm8k")
    docs = task.load(a.data_dir).docs[: a.queries]
    queries = [task.query(d) for d in docs]
    be = make_backend(f"llamacpp:{a.model}", "small",
                      {"n_parallel": a.parallel, "n_ctx_per_slot": 1024, "progress": False})
    be.generate([GenRequest(messages=queries[0].messages, max_tokens=2)])  # warm-up (load)
    llm = be.generate([q.request(logprobs=True) for q in queries])  # the "LLM" answers (not timed)
    spec = GridSpec(levels=tuple(i / (a.levels - 1) for i in range(a.levels)))
    per_level: list[list[GenRequest]] = []
    for level in spec.all_levels():
        reqs = []
        for q, r in zip(queries, llm, strict=True):
            n_full = len(r.tokens or [])
            rec = {"tokens": r.tokens or [], "output_tokens": n_full}
            k = hint_size(level, "fraction", n_full)
            if level > 0 and k >= n_full:
                continue  # the LLM answer itself: no SLM call
            reqs.append(slm_request(q, hint_text(rec, k), k, spec, 0))
        if reqs:
            per_level.append(reqs)
    n = sum(len(x) for x in per_level)
    t_batch, out_b = timed(lambda: [res for reqs in per_level for res in be.generate(reqs)])
    t_naive, out_n = timed(lambda: [be.generate([r])[0] for reqs in per_level for r in reqs])
    differ = sum(x.text != y.text for x, y in zip(out_b, out_n, strict=True))
    reused_b = sum(r.cached_input_tokens for r in out_b)
    reused_n = sum(r.cached_input_tokens for r in out_n)
    prompt = sum(r.input_tokens for r in out_b)
    print(f"prompts           {n} ({len(per_level)} SLM levels x {len(queries)} queries, max_tokens {a.max_tokens})")
    print(f"batched per level {t_batch:8.1f} s  ({len(per_level)} generate calls, {a.parallel} slots)")
    print(f"naive one-by-one  {t_naive:8.1f} s  ({n} generate calls)")
    print(f"speed ratio       {t_naive / t_batch:8.2f} x")
    print(f"prefill reused    batched {reused_b}/{prompt} prompt tokens; naive {reused_n}/{prompt}")
    print(f"outputs differing {differ}/{n} (batch composition can change low-order float sums on CPU)")
    be.close()


def speculative(a: argparse.Namespace) -> None:
    from shepherd_bench.backends import make_backend
    from shepherd_bench.tasks import get_task

    task = get_task("gsm8k")
    queries = [task.query(d) for d in task.load(a.data_dir).docs[: a.queries]]
    reqs = [GenRequest(messages=q.messages, max_tokens=a.max_tokens) for q in queries]
    slots = min(a.parallel, 4)
    times, texts, tokens = {}, {}, {}
    for name, extra in (("plain", {}), ("speculative", {"draft_model": MODEL, "draft_max": a.draft_max})):
        be = make_backend(f"llamacpp:{LLM}", "large", {"n_parallel": slots, "progress": False, **extra})
        be.generate([GenRequest(messages=queries[0].messages, max_tokens=2)])  # warm-up (load)
        times[name], out = timed(lambda be=be: be.generate(reqs))
        texts[name], tokens[name] = [r.text for r in out], sum(r.output_tokens for r in out)
        be.close()
    same = sum(x == y for x, y in zip(texts["plain"], texts["speculative"], strict=True))
    print(f"LLM answers       {len(reqs)} GSM8K prompts, {LLM}, greedy, max_tokens {a.max_tokens}, {slots} slots")
    for name in times:
        print(f"{name:17s} {times[name]:8.1f} s  {tokens[name]} tokens, {tokens[name] / times[name]:.1f} tokens/s")
    print(f"speed ratio       {times['plain'] / times['speculative']:8.2f} x  (speculative vs plain, draft "
          f"{MODEL}, draft_max {a.draft_max})")
    print(f"identical texts   {same}/{len(reqs)}")


if __name__ == "__main__":
    main()
