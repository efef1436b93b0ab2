"""Shared fixtures. Benchmark data is never committed: it comes from $SHEPHERD_BENCH_DATA or
``<repo>/../shared/data`` (where CI puts the verified copies)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared benchmark data directory (mbpp/, gsm8k/); skips the test if it is absent."""
    env = os.environ.get("SHEPHERD_BENCH_DATA", "").strip()
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "mbpp").is_dir() or not (path / "gsm8k").is_dir():
        pytest.skip(f"benchmark data not found at {path} (set SHEPHERD_BENCH_DATA or provide ../shared/data)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
