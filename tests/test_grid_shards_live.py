"""Sharded grids on the real embedded 0.5B model (as SLM and LLM: the logic checked is the same, and it
keeps the run small): slices built as Ray tasks on a local cluster, or one after another with one of them
killed part-way and resumed, merge into the one-process grid row for row (timings aside)."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.cli import build_parser, main
from shepherd_bench.research.grid import GridStore, Shard, execute_grid, grid_config

pytestmark = pytest.mark.slow

MODEL = "llamacpp:qwen2.5-coder-0.5b"
# One slot, no prompt-cache reuse, one thread: llama.cpp's output then does not depend on which requests
# share a batch, and the slices batch differently from the one-process grid.
OPTS = ["n_ctx_per_slot=1024", "n_parallel=1", "cache_prompt=false", "n_threads=1"]
MAX_TOKENS = 40  # short answers keep the CPU run small
TIMINGS = {"latency_s", "slm_latency_s"}  # the only fields that legitimately differ between builds
SET_MAX_TOKENS = f"from shepherd_bench.tasks.gsm8k import GSM8K; GSM8K.max_tokens = {MAX_TOKENS}"


def grid_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    opts = [x for o in OPTS for x in ("--slm-opt", o, "--llm-opt", o)]
    return ["grid", "--task", "gsm8k", "--tokens", "0,8", "--limit", "4", "--batch-size", "3", "--slm", MODEL,
            "--llm", MODEL, *opts, "--data-dir", str(data_dir), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one-process grid, built with the same command (no generation cache: every call is real)."""
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install -e .[cpu])")
    out = tmp_path_factory.mktemp("one") / "grid"
    with pytest.MonkeyPatch.context() as mp:
        from shepherd_bench.tasks.gsm8k import GSM8K

        mp.setattr(GSM8K, "max_tokens", MAX_TOKENS)
        assert main(grid_args(data_dir, out, "--no-cache")) == 0
        yield out


@pytest.fixture
def short_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from shepherd_bench.tasks.gsm8k import GSM8K

    monkeypatch.setattr(GSM8K, "max_tokens", MAX_TOKENS)


def records(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    store = GridStore(root)
    strip = [{k: v for k, v in r.items() if k not in TIMINGS} for r in store.read(store.llm_path)]
    return strip, [{k: v for k, v in r.items() if k not in TIMINGS} for r in store.rows()]


def assert_same_grid(merged: Path, one: Path) -> None:
    llm_m, rows_m = records(merged)
    llm_1, rows_1 = records(one)
    assert len(llm_m) == 4 and len(rows_m) == len(rows_1) >= 4 * 3
    assert llm_m == llm_1
    assert rows_m == rows_1  # same rows, same order
    a, b = (json.loads((p / "manifest.json").read_text()) for p in (merged, one))
    assert a.pop("sharded")["count"] == 2
    differ = {"argv", "created", "resumed"}
    assert {k: v for k, v in a.items() if k not in differ} == {k: v for k, v in b.items() if k not in differ}
    assert a["llm"]["identity"]["revision"] == b["llm"]["identity"]["revision"]


def test_ray_slices_merge_into_the_one_process_grid(reference: Path, data_dir: Path, tmp_path: Path,
                                                    short_answers: None) -> None:
    ray = pytest.importorskip("ray")

    def in_each_worker() -> None:  # the test's short answers, in Ray's worker processes too
        from shepherd_bench.tasks.gsm8k import GSM8K

        GSM8K.max_tokens = MAX_TOKENS

    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"worker_process_setup_hook": in_each_worker})
    try:
        assert main(grid_args(data_dir, tmp_path / "g", "--shards", "2", "--ray", "--no-cache")) == 0
    finally:
        ray.shutdown()
    for i in range(2):
        man = json.loads((Shard(i, 2).folder(tmp_path / "g") / "manifest.json").read_text())
        assert man["shard"]["finished"] and man["n_queries"] == 2
    assert_same_grid(tmp_path / "g", reference)


def cache_entries(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


def kill_part_way(cmd: list[str], cache: Path, after: int, log: Path) -> None:
    """Run ``cmd`` and SIGKILL it as soon as ``after`` calls are in the generation cache."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None and cache_entries(cache) < after:
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()


def test_killed_slice_resumes_with_only_its_unfinished_calls(reference: Path, data_dir: Path, tmp_path: Path,
                                                             short_answers: None) -> None:
    out, cache = tmp_path / "g", tmp_path / "cache.sqlite"
    args = grid_args(data_dir, out, "--shard", "0/2", "--cache", str(cache))
    run = f"import sys; {SET_MAX_TOKENS}; from shepherd_bench.cli import main; sys.exit(main(sys.argv[1:]))"
    kill_part_way([sys.executable, "-c", run, *args], cache, after=3, log=tmp_path / "killed.log")
    finished = cache_entries(cache)  # calls finished before the kill (the LLM answers and some SLM ones)
    llm_before = len(GridStore(Shard(0, 2).folder(out)).llm_answers())
    _, stats = execute_grid(grid_config(build_parser().parse_args(args)), out=out, shard=Shard(0, 2),
                            cache_path=cache, progress=False)
    # one cache entry per distinct call (with one model as SLM and LLM, a level-0 continuation is the LLM's
    # own call); the resume asked what the grid store lacked, and the model made only the calls the cache
    # lacked: the unfinished ones
    asked = (2 - llm_before) + stats.slm_requests
    made = asked - stats.cached_requests
    assert 0 < finished < cache_entries(cache), (finished, (tmp_path / "killed.log").read_text()[-2000:])
    assert made == cache_entries(cache) - finished > 0
    assert main(grid_args(data_dir, out, "--shard", "1/2", "--cache", str(cache))) == 0
    assert main(grid_args(data_dir, out, "--merge")) == 0
    assert_same_grid(out, reference)

