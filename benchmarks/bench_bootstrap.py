"""Paired bootstrap speed: the vectorised implementation vs a naive per-strategy loop, same run.

    python benchmarks/bench_bootstrap.py [--B 10000] [--n 1000] [--k 20] [--naive-B 1000]

The naive baseline resamples each strategy separately with fancy indexing (``values[idx].mean``),
the way a straightforward implementation would; it runs on ``--naive-B`` resamples and its time is
scaled linearly to B (it is linear in B), so the comparison stays quick. Prints times and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from shepherd_bench.analysis.bootstrap import paired_bootstrap, resample_indices


def naive(correct: np.ndarray, cost: np.ndarray, B: int, seed: int) -> list[tuple[float, ...]]:
    """Per strategy: resample, mean, percentiles; then each strategy minus the first."""
    idx = resample_indices(correct.shape[0], B, seed)
    out = []
    first = correct[idx, 0].mean(axis=1)
    for j in range(correct.shape[1]):
        acc = correct[idx, j].mean(axis=1)
        cst = cost[idx, j].mean(axis=1)
        diff = acc - first
        out.append(tuple(float(v) for v in (*np.percentile(acc, [2.5, 97.5]), *np.percentile(cst, [2.5, 97.5]),
                                             *np.percentile(diff, [2.5, 97.5]))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--naive-B", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    correct = (rng.random((args.n, args.k)) < 0.6).astype(float)
    cost = rng.gamma(2.0, 1e-4, size=(args.n, args.k))
    names = [f"s{j}" for j in range(args.k)]

    paired_bootstrap(correct[:50], cost[:50], names, B=50)  # warm-up
    fast = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        paired_bootstrap(correct, cost, names, B=args.B, seed=0)
        fast.append(time.perf_counter() - t0)
    slow = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        naive(correct, cost, args.naive_B, seed=0)
        slow.append((time.perf_counter() - t0) * args.B / args.naive_B)
    t_fast, t_slow = min(fast), min(slow)
    print(f"paired bootstrap: B={args.B} x n={args.n} x k={args.k} strategies (+{args.k - 1} differences)")
    print(f"  vectorised (one index matrix, counts @ values): {t_fast:.3f} s (best of {args.repeat})")
    print(f"  naive per-strategy loop (fancy indexing):      {t_slow:.3f} s "
          f"(measured at B={args.naive_B}, scaled to B={args.B})")
    print(f"  speed-up: {t_slow / t_fast:.1f}x")


if __name__ == "__main__":
    main()
