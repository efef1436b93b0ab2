"""Harness overhead per query with no model time, and a cached re-run of a finished 164-query HumanEval run.

The LLM is the loopback OpenAI server (tests/openai_server.py, in its own process) answering canned
reference answers at once, so every second measured is the harness's: HTTP client, cache, meter, run
store, grading.

1. Overhead: ``llm`` on GSM8K (``--queries``, math grading, no sandbox) through ``runner.execute``, once
   with an empty cache (every call goes over HTTP) and once with the warm cache; wall / queries
   (target < 5 ms).
2. HumanEval (164 queries, sandboxed grading) through the CLI: a first run, the same command again on the
   finished folder (resume: nothing to do), and a new folder with the warm cache (0 model calls, every
   answer graded again); wall times, model calls, and each re-run's wall as a fraction of the first.

    python benchmarks/bench_overhead.py [--queries 500] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY_ENV = "SB_BENCH_OVERHEAD_KEY"


def serve(conn: Connection, task: str, data_dir: str) -> None:
    """Child process: canned reference answers for ``task``; sends the URL, stops on any message."""
    from tests.openai_server import (
        OpenAILoopbackServer,
        answer_table,
        canned_generator,
        gsm8k_table,
        humaneval_table,
    )

    if task == "gsm8k":
        table = gsm8k_table(Path(data_dir) / "gsm8k" / "test.jsonl")

        def answer(message: str) -> str:  # the question is the prompt's last paragraph: a dict lookup
            return table.get(message.split("\n\n", 1)[-1].strip(), "#### 0")
    else:
        answer = answer_table(humaneval_table())
    with OpenAILoopbackServer(canned_generator(answer)) as srv:
        conn.send(srv.base_url)
        conn.recv()


def start_server(task: str, data_dir: Path) -> tuple[Connection, str]:
    parent, child = mp.get_context("spawn").Pipe()
    mp.get_context("spawn").Process(target=serve, args=(child, task, str(data_dir)), daemon=True).start()
    return parent, str(parent.recv())


def llm_options(base_url: str) -> dict[str, str]:
    return {"base_url": base_url, "api_key_env": KEY_ENV, "concurrency": "16"}


def overhead(data_dir: Path, n: int, tmp: Path) -> dict[str, float]:
    """Milliseconds per query: wall and harness-process CPU, cold cache (over HTTP) and warm cache."""
    from shepherd_bench.config import ModelConfig, RunConfig
    from shepherd_bench.prices import load_prices
    from shepherd_bench.runner import execute

    conn, url = start_server("gsm8k", data_dir)
    os.environ[KEY_ENV] = "bench"
    cfg = RunConfig(task="gsm8k", strategy="llm", strategy_params={}, slm=ModelConfig("llamacpp", "free"),
                    llm=ModelConfig("openai:loopback", "gpt-4o-mini", llm_options(url)), limit=n,
                    data_dir=str(data_dir), batch_size=64)
    import aiohttp  # noqa: F401  (a one-off import per process: not a per-query cost)

    out = {}
    for name in ("cold", "warm"):
        t0, c0 = time.perf_counter(), time.process_time()
        s = execute(cfg, prices=load_prices(), out=tmp / name, cache_path=tmp / "gsm8k.sqlite", progress=False).summary
        out[f"{name} wall"] = 1000 * (time.perf_counter() - t0) / n
        out[f"{name} cpu"] = 1000 * (time.process_time() - c0) / n
        assert s["n"] == n and s["errors"] == 0, s
    conn.send("stop")
    return out


def cli_run(url: str, out: Path, cache: Path) -> tuple[float, dict[str, Any]]:
    argv = [sys.executable, "-m", "shepherd_bench.cli", "run", "--task", "humaneval", "--strategy", "llm",
            "--out", str(out), "--cache", str(cache), "--llm", "openai:loopback", "--llm-price", "gpt-4o-mini",
            "--json"] + [x for k, v in llm_options(url).items() for x in ("--llm-opt", f"{k}={v}")]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env={**os.environ, KEY_ENV: "bench"}, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(proc.stdout)


def cached_rerun(data_dir: Path, tmp: Path) -> list[tuple[str, float, dict[str, Any]]]:
    conn, url = start_server("humaneval", data_dir)
    cache = tmp / "humaneval.sqlite"
    runs = [("first run", tmp / "he"), ("same command again", tmp / "he"), ("new folder, warm cache", tmp / "he2")]
    out = [(label, *cli_run(url, folder, cache)) for label, folder in runs]
    conn.send("stop")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=500, help="GSM8K queries for the overhead figure")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SHEPHERD_BENCH_DATA", REPO.parent / "shared/data")))
    ap.add_argument("--quick", action="store_true", help="200 GSM8K queries")
    a = ap.parse_args()
    n = 200 if a.quick else a.queries
    with tempfile.TemporaryDirectory(prefix="sb-overhead-") as tmp:
        ms = overhead(a.data_dir, n, Path(tmp))
        print(f"GSM8K llm x {n}, canned answers over loopback HTTP (server in another process), runner.execute")
        print(f"  cold cache, every call over HTTP: {ms['cold wall']:6.2f} ms wall, {ms['cold cpu']:6.2f} ms harness "
              "CPU per query (the HTTP client's own cost included)")
        print(f"  warm cache, every call cached:    {ms['warm wall']:6.2f} ms wall, {ms['warm cpu']:6.2f} ms harness "
              "CPU per query")
        runs = cached_rerun(a.data_dir, Path(tmp))
    first = runs[0][1]
    print("HumanEval llm x 164 through the CLI (sandboxed grading; canned answers)")
    for label, wall, s in runs:
        print(f"  {label:24s} {wall:6.2f} s  model calls {s['model_calls']:3d}  cached {s['cached_calls']:3d}  "
              f"pass {s['correct']}/{s['n']}  ({wall / first:.2f} of the first run)")
    cpu = ms["cold cpu"]
    print(f"overhead per query = {cpu:.2f} ms harness CPU with HTTP, {ms['warm wall']:.2f} ms wall without "
          f"(target < 5 ms: {'met' if cpu < 5 else 'NOT met'} with HTTP, {'met' if ms['warm wall'] < 5 else 'NOT met'} without)")
    print(f"cached re-run model calls = {runs[2][2]['model_calls']}, wall = {runs[2][1]:.2f} s "
          f"({runs[2][1] / first:.2f} of the first run); resume of the finished run {runs[1][1]:.2f} s")


if __name__ == "__main__":
    main()
