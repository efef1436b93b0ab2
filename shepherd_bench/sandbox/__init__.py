"""Isolated execution of untrusted code (see docs/SANDBOX.md).

A warm interpreter (the zygote) runs inside a bubblewrap namespace (no network, private /tmp, read-only
system files, own pid namespace) and forks one child per job. Each child gets its own session, resource
limits, a throwaway working directory, a cleared environment, an unprivileged uid per worker slot and a
seccomp filter. The verdict travels over a private pipe, and literal asserts (``assert f(x) == 3``) are
judged in the parent from serialised return values, so ``__eq__`` overrides and frame-walking forgeries
cannot make them pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ._isolation import SandboxConfig

VerdictStatus = Literal["pass", "fail", "timeout", "error"]

__all__ = ["Job", "SandboxConfig", "Verdict", "VerdictStatus", "calibrate_timeout", "detect_isolation", "run",
           "run_batch"]


@dataclass(frozen=True)
class Job:
    program: str  # the candidate program (definitions)
    tests: str  # test code run after the program; raises on failure
    timeout: float = 10.0  # seconds of wall time, from fork to exit
    memory_mb: int = 2048  # address-space limit
    entry_point: str | None = None  # the function under test: kept visible even if it shadows a builtin


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    detail: str = ""
    duration_s: float = 0.0
    output: str = ""  # head of the captured stdout/stderr (capped)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def run(program: str, tests: str, timeout: float = 10.0, memory_mb: int = 2048, *,
        entry_point: str | None = None, config: SandboxConfig | None = None) -> Verdict:
    return run_batch([Job(program, tests, timeout, memory_mb, entry_point)], workers=1, config=config)[0]


def run_batch(jobs: list[Job], workers: int | None = None, progress: bool = False, *,
              config: SandboxConfig | None = None, lift_asserts: bool = True) -> list[Verdict]:
    """Grade ``jobs`` in parallel (``workers`` defaults to the CPU count); verdicts in input order."""
    from ._isolation import interpreter, probe, warn_missing  # noqa: PLC0415
    from ._pool import execute, judge, prepare  # noqa: PLC0415

    if not jobs:
        return []
    cfg = config or SandboxConfig()
    layers = probe(interpreter(cfg))
    warn_missing(layers, cfg)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    items = [prepare(job, lift_asserts) for job in jobs]
    bar = _progress(len(jobs)) if progress else None
    collected = execute(items, cfg, layers, workers, (lambda _i: bar.update(1)) if bar else (lambda _i: None))
    if bar:
        bar.close()
    return [judge(p, c, _verdict) for p, c in zip(items, collected)]


def _verdict(status: VerdictStatus, detail: str, duration: float, output: str) -> Verdict:
    return Verdict(status, detail, round(duration, 6), output)


def _progress(total: int) -> Any:
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc="sandbox", unit="job")


def detect_isolation(config: SandboxConfig | None = None) -> dict[str, Any]:
    """The isolation layers available here, as a JSON-able dict for the run manifest."""
    from ._isolation import describe  # noqa: PLC0415

    return describe(config)


def calibrate_timeout(reference_seconds: float, floor: float = 2.0, factor: float = 5.0,
                      cap: float = 60.0) -> float:
    """Per-problem time limit from the reference solution's runtime (evalplus style): a floor absorbs
    start-up noise and machine load, the factor leaves room for slower-but-correct programs."""
    return round(min(cap, max(floor, factor * max(0.0, reference_seconds))), 3)
