"""Two ``shepherd-bench run`` processes sharing one generation cache at the same time, then a third run.

Both finish with every sample; the SQLite file passes its integrity check and holds each request once;
a later run with the same cache asks the server nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_server import OpenAILoopbackServer, answer_table, canned_generator, gsm8k_table

N = 40
KEY_ENV = "SB_CACHE_TEST_KEY"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[OpenAILoopbackServer]:
    table = gsm8k_table(data_dir / "gsm8k" / "test.jsonl", N)
    with OpenAILoopbackServer(canned_generator(answer_table(table), delay_s=0.02), api_key="k") as srv:
        yield srv


def start(srv: OpenAILoopbackServer, data: Path, out: Path, cache: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "shepherd_bench.cli", "run", "--task", "gsm8k", "--strategy", "llm",
            "--limit", str(N), "--batch-size", "4", "--data-dir", str(data), "--out", str(out), "--cache", str(cache),
            "--llm", "openai:loopback", "--llm-price", "gpt-4o-mini", "--llm-opt", f"base_url={srv.base_url}",
            "--llm-opt", f"api_key_env={KEY_ENV}", "--llm-opt", "concurrency=4", "--json"]
    return subprocess.Popen(argv, env={**os.environ, KEY_ENV: "k"}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def summary(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-4000:]
    result: dict[str, object] = json.loads(out)
    return result


def test_two_runs_share_a_cache_safely(server: OpenAILoopbackServer, data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shared.sqlite"
    a, b = (start(server, data_dir, tmp_path / name, cache) for name in ("a", "b"))
    sa, sb = summary(a), summary(b)
    for s in (sa, sb):
        assert (s["n"], s["errors"], s["correct"]) == (N, 0, N)
    assert sa["cost_usd"] == sb["cost_usd"]
    asked = len(server.state.bodies)
    assert N <= asked <= 2 * N

    db = sqlite3.connect(str(cache))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM generations").fetchone() == (N, N)
    finally:
        db.close()

    sc = summary(start(server, data_dir, tmp_path / "c", cache))
    assert len(server.state.bodies) == asked
    assert (sc["model_calls"], sc["cached_calls"], sc["cost_usd"]) == (0, N, sa["cost_usd"])


def _open_fresh(path: str, barrier: object) -> None:
    from shepherd_bench.backends.cache import GenerationCache

    barrier.wait()  # type: ignore[attr-defined]
    cache = GenerationCache(Path(path))
    cache.get_many(["k"])
    cache.close()


def test_many_processes_create_one_fresh_cache_at_once(tmp_path: Path) -> None:
    """Opening a brand-new cache file from several processes at the same instant: switching it to WAL
    and creating the table must wait for the lock, not fail with 'database is locked'."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    failures = 0
    for trial in range(8):
        path = str(tmp_path / f"c{trial}.sqlite")
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_open_fresh, args=(path, barrier)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            failures += p.exitcode != 0
    assert failures == 0
