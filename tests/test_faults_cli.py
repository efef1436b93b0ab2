"""Bad input through the real CLI (a subprocess): exit code 2, one ``error:`` line naming the fix, no traceback.

Every error is found before the run's progress bar (backends are checked up front: options, API key,
model file and its sha256), so stderr starts with ``error:`` (after the sha256 check's own progress,
where a model file is verified) and no run folder is created. All
cases run at once in a thread pool (each is its own process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PINNED_SMALL = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PINNED_SMALL_SIZE = 491_400_064


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    needles: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def cases(data: Path, tmp: Path) -> list[Case]:
    bad_schema, bad_json, empty = tmp / "schema", tmp / "json", tmp / "empty"
    for d in (bad_schema / "gsm8k", bad_json / "gsm8k", empty):
        d.mkdir(parents=True)
    (bad_schema / "gsm8k" / "test.jsonl").write_text('{"problem": "1+1?", "solution": "#### 2"}\n')
    (bad_json / "gsm8k" / "test.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"\n')
    short, wrong = tmp / "short", tmp / "wrong"
    for d in (short, wrong):
        d.mkdir()
    (short / PINNED_SMALL).write_bytes(b"GGUF" + b"\0" * 996)
    with open(wrong / PINNED_SMALL, "wb") as f:
        f.truncate(PINNED_SMALL_SIZE)  # the right size, sparse zeros: only the sha256 can tell
    gsm = ["--task", "gsm8k", "--limit", "1", "--data-dir", str(data)]
    llm = ["--llm", "openai:gpt-4o-mini", "--llm-opt", "api_key_env=SB_FAULTS_KEY"]
    models = {"SHEPHERD_BENCH_CACHE": str(tmp / "cache")}
    return [
        Case("unknown task", ["--task", "gsm8kk", "--strategy", "llm"], ("unknown task 'gsm8kk'", "did you mean 'gsm8k'")),
        Case("unknown strategy", [*gsm, "--strategy", "shepard"], ("unknown strategy", "did you mean 'shepherd'")),
        Case("unknown backend", [*gsm, "--strategy", "llm", "--llm", "openia:gpt-4o"],
             ("unknown backend 'openia'", "did you mean 'openai'", "list backends")),
        Case("unknown backend, unpriced model", [*gsm, "--strategy", "llm", "--llm", "openia:my-model"],
             ("unknown backend 'openia'", "did you mean 'openai'")),
        Case("bad model spec", [*gsm, "--strategy", "llm", "--llm", "gpt-4o"], ("must be backend:model",)),
        Case("unknown -S key", [*gsm, "--strategy", "shepherd", "-S", "hint_tokns=8"],
             ("no parameter 'hint_tokns'", "valid keys: hint_tokens")),
        Case("bad -S type", [*gsm, "--strategy", "shepherd", "-S", "hint_tokens=many"], ("hint_tokens='many'", "int")),
        Case("-S without =", [*gsm, "--strategy", "shepherd", "-S", "hint_tokens"], ("expects key=value",)),
        Case("unknown backend option", [*gsm, "--strategy", "llm", *llm, "--llm-opt", "bogus=1"],
             ("unknown openai option(s) ['bogus']", "known:"), env={"SB_FAULTS_KEY": "k"}),
        Case("no price", [*gsm, "--strategy", "llm", "--llm", "openai:my-model"], ("no price for model 'my-model'",
             "--llm-price")),
        Case("missing API key", [*gsm, "--strategy", "llm", *llm], ("SB_FAULTS_KEY is not set",)),
        Case("short model file", [*gsm, "--strategy", "slm", "--slm", f"llamacpp:{short / PINNED_SMALL}"],
             ("has 1,000 bytes", "expected 491,400,064", "download it again"), env=models),
        Case("wrong sha256", [*gsm, "--strategy", "slm", "--slm", f"llamacpp:{wrong / PINNED_SMALL}"],
             ("sha256", "expected 1d9614638d18024d", "download it again"), env=models),
        Case("dataset schema", ["--task", "gsm8k", "--strategy", "llm", "--data-dir", str(bad_schema)],
             ("test.jsonl: record 0 has no field 'question'", "expected fields: question, answer")),
        Case("dataset not JSON", ["--task", "gsm8k", "--strategy", "llm", "--data-dir", str(bad_json)],
             ("test.jsonl: line 1 is not valid JSON",)),
        Case("offline, empty data dir", ["--task", "gsm8k", "--strategy", "llm", "--data-dir", str(empty)],
             ("gsm8k/test.jsonl not found", "--data-dir"), env={"HF_HUB_OFFLINE": "1"}),
        Case("offline, no data dir", ["--task", "mbpp", "--strategy", "llm"],
             ("offline mode is set", "mbpp/mbpp.jsonl", "--data-dir"), env={"HF_HUB_OFFLINE": "1"}),
    ]


def run_case(case: Case, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SB_FAULTS_KEY", "SHEPHERD_BENCH_DATA")}
    env.update(case.env)
    argv = [sys.executable, "-m", "shepherd_bench.cli", "run", *case.args, "--out", str(cwd / case.name.replace(" ", "_"))]
    return subprocess.run(argv, env=env, cwd=cwd, text=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def results(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, subprocess.CompletedProcess[str]]]:
    tmp = tmp_path_factory.mktemp("cli")
    todo = cases(data_dir, tmp)
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda c: run_case(c, tmp), todo))
    assert [c.name for c in todo] == NAMES
    return {c.name: (c, p) for c, p in zip(todo, done, strict=True)}


NAMES = [
    "unknown task", "unknown strategy", "unknown backend", "unknown backend, unpriced model", "bad model spec", "unknown -S key", "bad -S type",
    "-S without =", "unknown backend option", "no price", "missing API key", "short model file", "wrong sha256",
    "dataset schema", "dataset not JSON", "offline, empty data dir", "offline, no data dir",
]


@pytest.mark.parametrize("name", NAMES)
def test_user_error_is_one_clear_line(name: str, results: dict[str, tuple[Case, subprocess.CompletedProcess[str]]]) -> None:
    case, proc = results[name]
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in proc.stdout
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and err.count("error: ") == 1, err[-2000:]
    before = err[: err.index("error: ")].replace("\r", "\n").splitlines()
    # found before the run's progress bar; only verifying a model file's sha256 shows its own progress
    assert all(not line.strip() or line.startswith("sha256 ") for line in before), err[:500]
    assert not (proc_dir := Path(proc.args[proc.args.index("--out") + 1])).exists(), proc_dir  # no run folder
    for needle in case.needles:
        assert needle in last, (needle, last)


def test_lm_eval_help_and_bare_call(capsys: pytest.CaptureFixture[str]) -> None:
    """`lm-eval --help` / `-h` reach lm_eval's own help (exit 0); a bare `lm-eval` is one line, exit 2."""
    from shepherd_bench.cli import main

    for flag in ("--help", "-h"):
        with pytest.raises(SystemExit) as done:
            main(["lm-eval", flag])
        assert done.value.code == 0
        assert "--tasks" in capsys.readouterr().out
    assert main(["lm-eval"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "lm-eval --help" in err


def test_exec_and_report_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mistakes on exec and report end in one line naming the file and the fix (exit 2), never a traceback;
    exec with nothing gradable fails instead of reporting pass@1 = 0."""
    from shepherd_bench.cli import main

    bad_json, no_id, unknown, empty = (tmp_path / f"{n}.jsonl" for n in ("bad", "noid", "unknown", "empty"))
    bad_json.write_text('{"task_id": "HumanEval/0", "completion": \n')
    no_id.write_text('{"completion": "    return 1\\n"}\n')
    unknown.write_text('{"task_id": "nope/1", "completion": "    return 1\\n"}\n')
    empty.write_text("")
    (tmp_path / "notarun").mkdir()
    calls = {
        "exec bad JSON": (["exec", "--task", "humaneval", "--samples", str(bad_json)], ("bad.jsonl:1", "not valid JSON")),
        "exec no task_id": (["exec", "--task", "humaneval", "--samples", str(no_id)], ("noid.jsonl:1", "no task_id")),
        "exec missing file": (["exec", "--task", "humaneval", "--samples", str(tmp_path / "x.jsonl")], ("does not exist",)),
        "exec empty file": (["exec", "--task", "humaneval", "--samples", str(empty)], ("holds no samples",)),
        "exec nothing gradable": (["exec", "--task", "humaneval", "--samples", str(unknown)],
                                  ("none of the 1 samples could be graded", "--task")),
        "report not a run": (["report", str(tmp_path / "notarun")], ("is not a run folder",)),
        "report bad target": (["report", str(tmp_path / "notarun"), "--target", "most"], ("bad target 'most'",)),
    }
    for name, (argv, needles) in calls.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert all(n in err for n in needles), (name, err)
