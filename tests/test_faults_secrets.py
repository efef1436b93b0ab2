"""API keys never reach run folders, the cache, or what the CLI prints, even when the server echoes them.

Three ``shepherd-bench run`` subprocesses against the loopback server: one that succeeds, one whose key
the server rejects (its 401 message quotes the key it got, as real servers partly do), and one where the
key itself is passed by mistake as ``api_key_env``. Every file under the run folders, the cache files
(with their WAL) and the captured stdout/stderr are then searched for the keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_server import OpenAILoopbackServer, answer_table, canned_generator, gsm8k_table

GOOD_KEY = "sk-sb-secret-GOOD-7f3a9c1e5d"
BAD_KEY = "sk-sb-secret-BAD-2b8e4d6f0a"
KEY_ENV = "SB_SECRETS_TEST_KEY"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[OpenAILoopbackServer]:
    table = gsm8k_table(data_dir / "gsm8k" / "test.jsonl", 3)
    with OpenAILoopbackServer(canned_generator(answer_table(table)), api_key=GOOD_KEY) as srv:
        yield srv


def run(srv: OpenAILoopbackServer, data: Path, out: Path, key: str, key_env: str = KEY_ENV) -> str:
    argv = [sys.executable, "-m", "shepherd_bench.cli", "run", "--task", "gsm8k", "--strategy", "llm",
            "--limit", "3", "--data-dir", str(data), "--out", str(out), "--cache", str(out.parent / f"{out.name}.sqlite"),
            "--llm", "openai:loopback", "--llm-price", "gpt-4o-mini", "--llm-opt", f"base_url={srv.base_url}",
            "--llm-opt", f"api_key_env={key_env}", "--llm-opt", "max_retries=0"]
    env = {**os.environ, KEY_ENV: key}
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, timeout=120)
    return f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def test_keys_appear_nowhere(server: OpenAILoopbackServer, data_dir: Path, tmp_path: Path) -> None:
    printed = {
        "good": run(server, data_dir, tmp_path / "good", GOOD_KEY),
        "rejected": run(server, data_dir, tmp_path / "rejected", BAD_KEY),
        "key as env name": run(server, data_dir, tmp_path / "misplaced", GOOD_KEY, key_env=GOOD_KEY),
    }
    assert printed["good"].startswith("exit 0") and "errors 0" in printed["good"]
    assert printed["rejected"].startswith("exit 0") and "errors 3" in printed["rejected"]
    assert printed["key as env name"].startswith("exit 2") and "api_key_env must name" in printed["key as env name"]
    rejected = [json.loads(x) for x in (tmp_path / "rejected" / "samples.jsonl").read_text().splitlines()]
    assert all("AuthenticationError (HTTP 401)" in r["error"] and "provided: ***" in r["error"] for r in rejected)

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"manifest.json", "samples.jsonl", "summary.json", "good.sqlite", "rejected.sqlite"} <= {p.name for p in files}
    for key in (GOOD_KEY, BAD_KEY):
        for p in files:
            assert key.encode() not in p.read_bytes(), f"{key} found in {p}"
        for what, text in printed.items():
            assert key not in text, f"{key} printed by the '{what}' run"
