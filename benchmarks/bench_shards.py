"""Grid building in slices on Ray: N slices against one, the same grid, the same machine, one run.

Both go through the same local Ray cluster (started once, ``--cpus`` CPUs): one slice that reserves every
CPU and gives llama.cpp as many threads, then N slices of ``cpus / N`` CPUs and threads each. Every slice
loads its own models (counted: that is the price of a slice). One slice with as many threads as each of
the N is timed too, to tell the slices' gain from the thread count's. No generation cache, so every call
is made; the model file is read once beforehand so no run pays the cold disk. Prints the wall times, the
ratios and how many merged rows differ (thread count and batch composition change low-order float sums).

    python benchmarks/bench_shards.py --queries 4 --shards 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from shepherd_bench.config import ModelConfig
from shepherd_bench.research.grid import GridConfig, GridSpec, GridStore, build_shards, merge_shards
from shepherd_bench.research.ray_pool import RayOptions

MODEL = "qwen2.5-coder-0.5b"


def config(a: argparse.Namespace, threads: int) -> GridConfig:
    opts = {"n_ctx_per_slot": 1024, "n_threads": threads, "progress": False}
    models = [ModelConfig(f"llamacpp:{m}", "free", dict(opts)) for m in (a.slm, a.llm)]
    spec = GridSpec(levels=tuple(float(x) for x in a.tokens.split(",")), kind="tokens")
    return GridConfig("gsm8k", models[0], models[1], spec, limit=a.queries, data_dir=str(a.data_dir))


def timed_build(cfg: GridConfig, out: Path, n: int, cpus: float) -> float:
    t0 = time.perf_counter()
    build_shards(cfg, out, n, ray=RayOptions(num_cpus=cpus), use_cache=False, progress=False)
    merge_shards(out, cfg, n)
    return time.perf_counter() - t0


def rows(root: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "slm_latency_s"} for r in GridStore(root).rows()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="the local Ray cluster's CPUs")
    ap.add_argument("--tokens", default="0,16", help="hint levels in LLM tokens")
    ap.add_argument("--max-tokens", type=int, default=64, help="answer budget of a GSM8K query")
    ap.add_argument("--slm", default=MODEL)
    ap.add_argument("--llm", default=MODEL)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SHEPHERD_BENCH_DATA", "../shared/data")))
    a = ap.parse_args()

    import ray

    from shepherd_bench.backends.models import resolve_model

    max_tokens = a.max_tokens

    def in_each_worker() -> None:
        from shepherd_bench.tasks.gsm8k import GSM8K

        GSM8K.max_tokens = max_tokens

    for m in {a.slm, a.llm}:
        Path(resolve_model(m).path).read_bytes()  # into the page cache, for both sides alike
    ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": in_each_worker})
    per = max(a.cpus // a.shards, 1)
    plans = [("1 slice", 1, a.cpus), ("1 slice", 1, per), (f"{a.shards} slices", a.shards, per)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            outs = [Path(tmp) / str(i) for i in range(len(plans))]
            times = [timed_build(config(a, threads), out, n, a.cpus / n)
                     for (_, n, threads), out in zip(plans, outs, strict=True)]
            grids = [rows(out) for out in outs]
    finally:
        ray.shutdown()
    print(f"grid              gsm8k, {a.queries} queries, levels {a.tokens} tokens (+ the full answer), "
          f"max_tokens {a.max_tokens}, SLM {a.slm}, LLM {a.llm}, no cache, local Ray cluster of {a.cpus} CPUs")
    for (name, n, threads), t in zip(plans, times, strict=True):
        print(f"{name:17s} {t:8.1f} s  ({a.cpus / n:g} CPUs and {threads} llama.cpp threads per slice, "
              f"a model load per slice)")
    print(f"speed ratio       {times[0] / times[2]:8.2f} x  ({a.shards} slices vs 1 slice with every thread)")
    print(f"                  {times[1] / times[2]:8.2f} x  ({a.shards} slices vs 1 slice with as many threads "
          f"as one of them)")
    print(f"rows differing    {differing(grids[2], grids[1])}/{len(grids[1])} from 1 slice at {per} threads, "
          f"{differing(grids[2], grids[0])}/{len(grids[0])} from 1 slice at {a.cpus} threads")


def differing(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))

if __name__ == "__main__":
    main()
