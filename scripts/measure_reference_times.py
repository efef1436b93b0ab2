"""Measure each code problem's reference solution in the sandbox (one worker, so no contention) and
write ``shepherd_bench/tasks/reference_times.json``: the per-problem time limits are derived from it
(``sandbox.calibrate_timeout``: factor x reference runtime, with the task's floor), as evalplus does.

    SHEPHERD_BENCH_DATA=../shared/data python scripts/measure_reference_times.py
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from shepherd_bench.sandbox import run_batch
from shepherd_bench.tasks import get_task
from shepherd_bench.tasks.code import REFERENCE_TIMES_PATH

TASKS = ("humaneval", "mbpp", "mbpp_sanitized")


def measure(name: str) -> dict[str, float]:
    task = get_task(name)
    docs = task.load().docs
    jobs = [dataclasses.replace(task.build_job(d, **task.reference_answer(d)), timeout=120.0)  # type: ignore[attr-defined]
            for d in docs]
    verdicts = run_batch(jobs, workers=1, progress=True)
    failed = [d.id for d, v in zip(docs, verdicts, strict=True) if not v.passed]
    print(f"{name}: {len(docs)} references, {len(failed)} not passing: {failed}", file=sys.stderr)
    return {d.id: round(v.duration_s, 3) for d, v in zip(docs, verdicts, strict=True)}


def main() -> int:
    table = {name: measure(name) for name in TASKS}
    Path(REFERENCE_TIMES_PATH).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE_TIMES_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
