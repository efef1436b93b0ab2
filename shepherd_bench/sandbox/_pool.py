"""Parent side of the worker pool: start the zygote (inside the namespace), stream jobs, judge verdicts."""

from __future__ import annotations

import json
import os
import secrets
import signal
import struct
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ._checks import Expectation, Lifted, judge_cases, lift_asserts, parse_channel
from ._isolation import ZYGOTE_SOURCE, Layers, SandboxConfig, pool_command

if TYPE_CHECKING:
    from . import Job, Verdict

FRAME = struct.Struct("<II")
SETUP_FAILED = 70


@dataclass
class Prepared:
    job: Job
    body: bytes
    nonce: str
    expectations: list[Expectation]


@dataclass
class Collected:
    output: bytearray = field(default_factory=bytearray)
    channel: bytearray = field(default_factory=bytearray)
    done: dict[str, Any] | None = None


def prepare(job: Job, lift: bool = True) -> Prepared:
    lifted = lift_asserts(job.tests) if lift else Lifted(job.tests, [], [])
    keep = ([job.entry_point] if job.entry_point else []) + lifted.called
    body = json.dumps({"program": job.program, "tests": lifted.tests, "keep": keep}).encode()
    return Prepared(job, body, secrets.token_hex(16), lifted.expectations)


def _zygote_config(cfg: SandboxConfig, layers: Layers, workers: int) -> str:
    return json.dumps({
        "workers": workers, "drop_uid": layers.uid_drop, "uid_base": cfg.uid_base,
        "seccomp": layers.seccomp_module.spec() if layers.seccomp_module else None,
        "allow_fork": cfg.allow_fork, "nproc": cfg.nproc, "fsize_mb": cfg.fsize_mb, "out_keep": cfg.out_keep,
        "out_limit": cfg.out_limit, "verdict_limit": cfg.verdict_limit,
        "tmp_root": "/tmp/sb" if layers.namespace == "bubblewrap" else _host_tmp_root(),
    })


def _host_tmp_root() -> str:
    import tempfile  # noqa: PLC0415

    path = tempfile.mkdtemp(prefix="shepherd-sandbox-")
    os.chmod(path, 0o711)
    return path


def _feed(stdin: IO[bytes], items: list[Prepared]) -> None:
    try:
        for i, p in enumerate(items):
            head = json.dumps({"id": i, "timeout": float(p.job.timeout), "memory_mb": int(p.job.memory_mb),
                               "nonce": p.nonce}).encode()
            stdin.write(FRAME.pack(len(head), len(p.body)) + head + p.body)
            stdin.flush()
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _read_frames(stdout: IO[bytes], collected: list[Collected], on_done: Callable[[int], None]) -> None:
    while True:
        head = stdout.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        hlen, blen = FRAME.unpack(head)
        hdr = json.loads(stdout.read(hlen))
        body = stdout.read(blen) if blen else b""
        item = collected[int(hdr["id"])]
        kind = hdr["k"]
        if kind == "o":
            item.output += body
        elif kind == "v":
            item.channel += body
        elif kind == "d":
            item.done = hdr
            on_done(int(hdr["id"]))


def execute(items: list[Prepared], cfg: SandboxConfig, layers: Layers, workers: int,
            on_done: Callable[[int], None]) -> list[Collected]:
    collected = [Collected() for _ in items]
    zcfg = _zygote_config(cfg, layers, workers)
    cmd = pool_command(cfg, layers, workers, ZYGOTE_SOURCE.read_text(), zcfg)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **cfg.extra_env}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/",
                            start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    feeder = threading.Thread(target=_feed, args=(proc.stdin, items), daemon=True)
    feeder.start()
    try:
        _read_frames(proc.stdout, collected, on_done)
    finally:
        feeder.join(timeout=5)
        _stop(proc)
        if layers.namespace != "bubblewrap":
            import shutil  # noqa: PLC0415

            shutil.rmtree(json.loads(zcfg)["tmp_root"], ignore_errors=True)
    return collected


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def judge(p: Prepared, c: Collected, make: Callable[..., Verdict]) -> Verdict:
    output = c.output.decode("utf-8", "replace")
    if c.done is None:
        return make("error", "sandbox worker died before grading this job", 0.0, output)
    dur = float(c.done.get("duration", 0.0))
    code = int(c.done.get("exit", 0))
    if c.done.get("timeout") or code == -signal.SIGXCPU:
        return make("timeout", f"exceeded {p.job.timeout:g}s", dur, output)
    if c.done.get("overflow"):
        return make("fail", "output limit exceeded: job killed", dur, output)
    ch = parse_channel(bytes(c.channel), p.nonce)
    if ch.forged:
        return make("fail", "verdict channel tampered with", dur, output)
    if not ch.ended:
        return make(*_no_verdict(code, output), dur, output)
    if not ch.ok:
        return make("fail", ch.error or "tests failed", dur, output)
    reason = judge_cases(p.expectations, ch.cases or {})
    if reason:
        return make("fail", reason, dur, output)
    return make("pass", "", dur, output)


def _no_verdict(code: int, output: str) -> tuple[str, str]:
    if code < 0:
        return "fail", f"killed by {_signal_name(-code)} before the tests finished"
    if code == SETUP_FAILED:
        tail = output.strip().splitlines()[-1:] or [""]
        return "error", f"sandbox setup failed in the child (exit {code}) {tail[0][:200]}".strip()
    return "fail", f"exited (code {code}) before the tests finished"
