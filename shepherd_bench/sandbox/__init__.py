"""Isolated execution of untrusted code. PROVISIONAL minimal implementation: being replaced by the
hardened sandbox (see docs/SANDBOX.md). Keep the public names and signatures stable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

VerdictStatus = Literal["pass", "fail", "timeout", "error"]


@dataclass(frozen=True)
class Job:
    program: str  # the candidate program (definitions)
    tests: str  # test code run after the program; raises on failure
    timeout: float = 10.0  # seconds
    memory_mb: int = 2048


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    detail: str = ""
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def run(program: str, tests: str, timeout: float = 10.0, memory_mb: int = 2048) -> Verdict:
    return run_batch([Job(program, tests, timeout, memory_mb)])[0]


def run_batch(jobs: list[Job], workers: int | None = None, progress: bool = False) -> list[Verdict]:
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(_run_one, jobs))


def _run_one(job: Job) -> Verdict:
    marker = "__SB_OK_%s__" % os.urandom(8).hex()
    src = job.program + "\n\n" + job.tests + f"\n\nprint({marker!r})\n"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prog.py")
        with open(path, "w") as f:
            f.write(src)
        try:
            p = subprocess.run([sys.executable, path], cwd=d, capture_output=True, timeout=job.timeout,
                               env={"PATH": "/usr/bin:/bin"}, text=True)
        except subprocess.TimeoutExpired:
            return Verdict("timeout", f"exceeded {job.timeout}s")
    if p.returncode == 0 and p.stdout.rstrip().endswith(marker):
        return Verdict("pass")
    lines = (p.stderr or "").strip().splitlines()
    return Verdict("fail", lines[-1][:300] if lines else f"exit {p.returncode}")
