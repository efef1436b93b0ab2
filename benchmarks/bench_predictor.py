"""Hint-predictor decision latency per query, against the SLM's own generation time in the same run.

A live ``-S policy=predicted`` run decides one query at a time: featurise the query text, then both
stages. This script trains the predictor on real HumanEval prompts (labels drawn at random: latency does
not depend on what was learned), times the decision one query at a time for each featuriser, then times
the embedded 0.5B SLM answering a few of the same prompts one at a time, and prints the ratios.

    python benchmarks/bench_predictor.py --queries 50 --slm-queries 3
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=50, help="queries decided one at a time (per featuriser)")
    ap.add_argument("--slm-queries", type=int, default=3, help="queries the SLM answers one at a time")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SHEPHERD_BENCH_DATA", "../shared/data")))
    a = ap.parse_args()

    from shepherd_bench.backends.base import GenRequest
    from shepherd_bench.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
    from shepherd_bench.predictor.evaluate import decision_overhead_ms
    from shepherd_bench.predictor.features import minilm_available
    from shepherd_bench.predictor.model import TrainOptions, train
    from shepherd_bench.predictor.policy import query_text
    from shepherd_bench.tasks import get_task

    task = get_task("humaneval")
    docs = task.load(a.data_dir if a.data_dir.exists() else None).docs
    queries = [task.query(d) for d in docs]
    texts = [query_text(q) for q in queries]
    rng = random.Random(0)
    n_star = [rng.choice([0, 0, 0, 16, 32, 64, 200]) for _ in texts]
    lengths = [200] * len(texts)
    ms: dict[str, float] = {}
    for feat in ("hashed-tfidf", "minilm"):
        if feat == "minilm" and not minilm_available():
            print("minilm            skipped (embeddings extra not installed)")
            continue
        model = train(texts, n_star, lengths, TrainOptions(featurizer=feat))
        model.decide(model.features(texts[:2]))  # warm-up (loads the encoder)
        ms[feat] = decision_overhead_ms(model, texts[: a.queries])
    slm = LlamaCppBackend("qwen2.5-coder-0.5b", LlamaCppSettings(n_parallel=1), progress=False)
    slm.generate([GenRequest(queries[0].messages, max_tokens=2)])  # warm-up (load)
    t0 = time.perf_counter()
    out_tokens = 0
    for q in queries[: a.slm_queries]:
        (res,) = slm.generate([q.request()])
        out_tokens += res.output_tokens
    slm_ms = (time.perf_counter() - t0) * 1000 / a.slm_queries
    print(f"SLM answer        {slm_ms:9.1f} ms per query ({a.slm_queries} HumanEval answers one at a time, "
          f"{out_tokens / a.slm_queries:.0f} tokens on average, {os.cpu_count()} cores)")
    for feat, v in ms.items():
        print(f"decision {feat:12s} {v:6.2f} ms per query ({a.queries} queries one at a time) = "
              f"{100 * v / slm_ms:.3f}% of the SLM's answer time")


if __name__ == "__main__":
    main()
