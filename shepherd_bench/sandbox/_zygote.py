"""Sandbox worker ("zygote"): a warm interpreter that forks one child per job.

This file is run as a script by a system interpreter (``python3 -I -c <this source> <config>``), usually
inside a bubblewrap namespace; it is never imported by the parent. Standard library only, plus the seccomp
binding the config names: python3-seccomp's ``seccomp`` by import, or pyseccomp's source, which the parent
read from its own environment (the system interpreter does not see the parent's site-packages).
With ``{"probe_seccomp": [binding, ...]}`` as config it loads the job filter with the first binding that
works, prints which one as a JSON line and exits (the parent's layer probe).

Wire protocol (all frames are ``<II`` header-length, body-length, then a JSON header, then raw body):
  parent -> worker (stdin):   {"id", "timeout", "memory_mb", "nonce"} + JSON job body
  worker -> parent (stdout):  {"id", "k": "o"|"v"} + a chunk of the child's output / verdict channel,
                              {"id", "k": "d", "exit", "timeout", "overflow", "duration"} when it is over.
The worker never parses job bodies or verdicts: it copies bytes through small buffers that it zeroes, so a
child forked later cannot find another job's program or results in the memory it inherits.
"""

from __future__ import annotations

import builtins
import json
import os
import resource
import selectors
import shutil
import signal
import struct
import sys
import time
import types
from typing import Any

FRAME = struct.Struct("<II")
VERDICT_FD = 3
CHUNK = 65536

# Imported once here so that children start with them loaded (the point of a zygote).
WARM_MODULES = [
    "math", "re", "string", "collections", "itertools", "functools", "heapq", "bisect", "typing", "hashlib",
    "random", "statistics", "fractions", "decimal", "copy", "operator", "datetime", "array", "cmath",
    "numbers", "dataclasses", "enum", "textwrap", "unicodedata",
]

_PRISTINE_BUILTINS = dict(builtins.__dict__)
_type = type
_len = len
_isinstance = isinstance
_str = str
_repr = repr
_BaseException = BaseException
_dumps = json.dumps
_write = os.write
_exit = os._exit

BUILTIN_NAMES = frozenset(_PRISTINE_BUILTINS)


# ----------------------------------------------------------------------------- value encoding (child side)

def _base(t: type) -> type | None:
    """The builtin type whose data a value of type ``t`` is read as (``t`` itself or a builtin base)."""
    for base in _ENCODABLE:
        if _issubclass(t, base):
            return base
    return None


def encode(value: Any, depth: int = 0) -> Any:
    """Encode a return value to tagged JSON from its builtin data only.

    Subclasses (Counter, OrderedDict, namedtuple, IntEnum, or an attacker's ``int`` with ``__eq__``
    always True) are read through the builtin base type's own slots, never through overridable methods,
    so the parent compares the data as the base type would. Other objects become "opaque": equal to
    nothing."""
    t = _type(value)
    base = _base(t)
    if base is None or depth > 60:
        name = getattr(t, "__qualname__", "?") if depth <= 60 else "too deep"
        return {"$": "opaque", "type": name[:80] if _type(name) is str else "?"}
    if base is bool or value is None:
        return value
    if base is int:
        return int.__index__(value)
    if base is float:
        return float.__float__(value)
    if base is str:
        return str.__str__(value)
    if base is list:
        return [encode(v, depth + 1) for v in list.__iter__(value)]
    if base is dict:
        items = dict.items(value)
        return {"$": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in items]}
    if base is bytes:
        return {"$": "bytes", "v": bytes.hex(value)}
    if base is complex:
        return {"$": "complex", "v": [_REAL(value), _IMAG(value)]}
    return {"$": base.__name__, "v": [encode(v, depth + 1) for v in base.__iter__(value)]}  # type: ignore[attr-defined]


_issubclass = issubclass
_FunctionType = type(lambda: None)
_REAL = complex.real.__get__  # type: ignore[attr-defined]
_IMAG = complex.imag.__get__  # type: ignore[attr-defined]
_ENCODABLE: tuple[type, ...] = (bool, type(None), int, float, str, list, tuple, dict, set, frozenset, bytes, complex)


class _Opaque:
    """Stands in for a returned object of an unknown type: equal to nothing, no attributes."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        object.__setattr__(self, "type_name", type_name)

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{object.__getattribute__(self, 'type_name')} object>"


def _trusted_types() -> frozenset[type]:
    import collections  # noqa: PLC0415
    import datetime  # noqa: PLC0415
    import decimal  # noqa: PLC0415
    import fractions  # noqa: PLC0415

    return frozenset({fractions.Fraction, decimal.Decimal, datetime.date, datetime.datetime, datetime.time,
                      datetime.timedelta, collections.Counter, collections.OrderedDict,
                      collections.defaultdict, collections.deque, range})


_TRUSTED = _trusted_types()
_ITERATOR_TYPES = frozenset({type((lambda: (yield))()), map, filter, zip, enumerate, reversed,
                             type(iter([])), type(iter(())), type(iter("")), type(iter(range(1))),
                             type({}.keys()), type({}.values()), type({}.items())})


def plain(value: Any, depth: int = 0) -> Any:
    """A copy of a candidate's return value built from builtin data only (see ``encode``): code in the
    tests then never runs the candidate's ``__eq__``, ``__sub__``, ``__bool__`` and the like."""
    t = _type(value)
    if t in _TRUSTED or depth > 60:
        return value
    base = _base(t)
    if base is None:
        if t in _ITERATOR_TYPES:
            return (plain(v, depth + 1) for v in value)
        return _Opaque(str(getattr(t, "__qualname__", "?"))[:80])
    if base is bool or value is None or (t is base and base in (int, float, str, bytes, complex)):
        return value
    if base is int:
        return int.__index__(value)
    if base is float:
        return float.__float__(value)
    if base is str:
        return str.__str__(value)
    if base is bytes:
        return bytes(bytes.__iter__(value))  # type: ignore[attr-defined]
    if base is complex:
        return complex(_REAL(value), _IMAG(value))
    if base is dict:
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in dict.items(value)}
    return base(plain(v, depth + 1) for v in base.__iter__(value))  # type: ignore[attr-defined,call-arg]


def _guarded(fn: Any) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return plain(fn(*args, **kwargs))

    guarded.__name__ = getattr(fn, "__name__", "candidate")
    guarded.__wrapped_candidate__ = fn  # type: ignore[attr-defined]
    return guarded


# ----------------------------------------------------------------------------- the child

class _Channel:
    def __init__(self, fd: int, nonce: str) -> None:
        self.fd = fd
        self.nonce = nonce

    def send(self, msg: dict[str, Any]) -> None:
        msg["n"] = self.nonce
        data = (_dumps(msg, allow_nan=True) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[_write(self.fd, view):]


def _describe(exc: BaseException) -> str:
    try:
        text = _str(exc)
    except _BaseException:
        text = "<unprintable>"
    name = getattr(_type(exc), "__name__", "Exception")
    return f"{name}: {text}"[:500] if text else _str(name)[:200]


def _test_globals(program_globals: dict[str, Any], keep: list[str]) -> dict[str, Any]:
    """The tests see the program's names, but not ones that shadow builtins (except functions under test)."""
    g: dict[str, Any] = {}
    for name, value in program_globals.items():
        if name.startswith("__") or (name in BUILTIN_NAMES and name not in keep):
            continue
        g[name] = _guarded(value) if _type(value) is _FunctionType and value.__globals__ is program_globals else value
    g["__builtins__"] = dict(_PRISTINE_BUILTINS)
    g["__name__"] = "__tests__"
    return g


def harness(job: dict[str, Any], chan: _Channel) -> None:
    program_globals: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": builtins}
    stage = "program"
    try:
        exec(compile(job["program"], "<program>", "exec", dont_inherit=True, optimize=0), program_globals)
        builtins.__dict__.clear()
        builtins.__dict__.update(_PRISTINE_BUILTINS)
        stage = "tests"
        tests_globals = _test_globals(program_globals, list(job.get("keep") or []))

        def record(index: int, value: Any) -> None:
            chan.send({"k": "case", "i": index, "v": encode(value)})

        tests_globals["__sb_case__"] = record
        exec(compile(job["tests"], "<tests>", "exec", dont_inherit=True, optimize=0), tests_globals)
    except _BaseException as exc:  # noqa: BLE001 - everything the candidate raises is a failure
        chan.send({"k": "end", "ok": False, "stage": stage, "err": _describe(exc)})
        return
    chan.send({"k": "end", "ok": True})


def _set_limits(cfg: dict[str, Any], hdr: dict[str, Any]) -> None:
    mem = int(hdr["memory_mb"]) * 1024 * 1024
    cpu = int(float(hdr["timeout"])) + 2
    limits = [
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, int(cfg["fsize_mb"]) * 1024 * 1024),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
    ]
    if cfg["drop_uid"]:
        limits.append((resource.RLIMIT_NPROC, int(cfg["nproc"])))
    for which, value in limits:
        resource.setrlimit(which, (value, value))


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


JOB_FILTER: Any = None  # the seccomp filter every child loads, built once by main() before any fork


def load_seccomp(spec: dict[str, Any]) -> Any:
    """python3-seccomp's module by import, or pyseccomp run from the source the parent sent (its own
    ``import`` would search the venv the sandbox interpreter does not see). Nothing is added to sys.path."""
    if spec.get("code") is None:
        return __import__(str(spec["name"]))
    module = types.ModuleType(str(spec["name"]))
    module.__file__ = str(spec["file"])
    exec(compile(spec["code"], module.__file__, "exec", dont_inherit=True), module.__dict__)
    return module


def job_filter(seccomp: Any, allow_fork: bool, zygote_pid: int) -> Any:
    """The jobs' syscall filter, built (not loaded) with the binding ``seccomp``. Built once in the zygote:
    each child inherits it and only loads it (building costs ~1 ms per job through ctypes)."""
    errno_eperm = seccomp.ERRNO(1)
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    mask = 0xFFFFFFFF
    for call in ("kill", "tkill"):
        f.add_rule(errno_eperm, call, seccomp.Arg(0, seccomp.MASKED_EQ, mask, mask))  # pid -1
        f.add_rule(errno_eperm, call, seccomp.Arg(0, seccomp.MASKED_EQ, mask, zygote_pid))
        f.add_rule(errno_eperm, call, seccomp.Arg(0, seccomp.MASKED_EQ, mask, (-zygote_pid) & mask))
    f.add_rule(errno_eperm, "tgkill", seccomp.Arg(0, seccomp.MASKED_EQ, mask, zygote_pid))
    denied = [
        "socket", "setsid", "setpgid", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
        "unshare", "setns", "pivot_root", "chroot", "bpf", "perf_event_open", "keyctl", "add_key",
        "request_key", "userfaultfd", "io_uring_setup", "kexec_load", "reboot", "swapon", "init_module",
        "finit_module", "delete_module", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at",
    ]
    if not allow_fork:
        denied += ["fork", "vfork", "execve", "execveat"]
        clone_thread = 0x00010000
        f.add_rule(errno_eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, clone_thread, 0))
    for call in denied:
        try:
            f.add_rule(errno_eperm, call)
        except (RuntimeError, ValueError, OSError):
            pass  # syscall unknown on this architecture
    f.add_rule(seccomp.ERRNO(38), "clone3")  # ENOSYS: libc falls back to clone, which is filtered
    return f


def probe_seccomp(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """Load the job filter (as a job would) with each binding in turn; report the first that works."""
    errors = []
    for i, spec in enumerate(specs):
        try:
            module = load_seccomp(spec)
            job_filter(module, False, os.getppid()).load()
        except _BaseException as exc:  # noqa: BLE001 - any failure means: not this binding
            errors.append(f"{spec['name']}: {_describe(exc)}")
            continue
        return {"chosen": i, "file": getattr(module, "__file__", "") or "", "errors": errors,
                "library": str(getattr(module, "_libseccomp_path", "") or "")}
    return {"chosen": None, "errors": errors}


def child_main(cfg: dict[str, Any], slot: int, hdr: dict[str, Any], body: bytearray,
               out_w: int, v_w: int, workdir: str) -> None:
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.dup2(v_w, VERDICT_FD)
        os.closerange(VERDICT_FD + 1, 1 << 16)
        sys.stdout = sys.__stdout__
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"})
        _set_limits(cfg, hdr)
        if cfg["drop_uid"]:
            _drop_privileges(int(cfg["uid_base"]) + slot)
        if cfg["seccomp"]:
            JOB_FILTER.load()
        job = json.loads(body.decode())
        body[:] = bytes(len(body))
        del body
        harness(job, _Channel(VERDICT_FD, hdr["nonce"]))
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except _BaseException as exc:  # noqa: BLE001
        code = 70
        try:
            os.write(2, f"sandbox setup: {_describe(exc)}".encode())
        except _BaseException:  # noqa: BLE001
            pass
    _exit(code)


# ----------------------------------------------------------------------------- the supervisor

def _uid_procs(uid: int) -> int:
    """How many processes other than this one run as ``uid`` (a scan of /proc)."""
    me, count = os.getpid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Uid:"):
                        count += int(line.split()[1]) == uid
                        break
        except OSError:
            continue
    return count


def _kill_uid(uid: int) -> int:
    """SIGKILL every process of ``uid`` (the caller runs as ``uid``); kill(-1) spares the caller only.
    kill(-1) reports success whenever any process exists, so a /proc scan decides when to stop."""
    for _ in range(100):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return 0
        if _uid_procs(uid) == 0:
            return 0
    return 3


class Run:
    def __init__(self, pid: int, slot: int, job_id: int, timeout: float, out_r: int, v_r: int, workdir: str):
        self.pid = pid
        self.slot = slot
        self.job_id = job_id
        self.start = time.monotonic()
        self.deadline = self.start + timeout
        self.out_r = out_r
        self.v_r = v_r
        self.workdir = workdir
        self.out_total = 0
        self.v_total = 0
        self.timed_out = False
        self.overflow = False
        self.status: int | None = None
        self.duration = 0.0


class Zygote:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.free = list(range(int(cfg["workers"])))
        self.runs: dict[int, Run] = {}
        self.by_fd: dict[int, tuple[Run, str]] = {}
        self.sel = selectors.DefaultSelector()
        self.scratch = bytearray(CHUNK)
        self.counter = 0
        self.eof = False
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.sel.register(0, selectors.EVENT_READ, "jobs")
        self.jobs_registered = True

    # -- io helpers
    def send(self, hdr: dict[str, Any], body: bytes | memoryview = b"") -> None:
        head = json.dumps(hdr).encode()
        data = FRAME.pack(len(head), len(body)) + head
        self._write_all(data)
        self._write_all(body)

    @staticmethod
    def _write_all(data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    @staticmethod
    def _read_exact(n: int) -> bytearray | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = os.readv(0, [view[got:]])
            if k == 0:
                return None
            got += k
        return buf

    # -- jobs
    def accept_job(self) -> None:
        head = self._read_exact(FRAME.size)
        if head is None:
            self.eof = True
            return
        hlen, blen = FRAME.unpack(bytes(head))
        hraw = self._read_exact(hlen)
        body = self._read_exact(blen)
        if hraw is None or body is None:
            self.eof = True
            return
        self.start_job(json.loads(hraw.decode()), body)
        body[:] = bytes(blen)  # the next child must not inherit this job's program

    def make_workdir(self, slot: int) -> str:
        self.counter += 1
        path = os.path.join(self.cfg["tmp_root"], f"job-{slot}-{self.counter}")
        os.mkdir(path, 0o700)
        if self.cfg["drop_uid"]:
            uid = int(self.cfg["uid_base"]) + slot
            os.chown(path, uid, uid)
        return path

    def start_job(self, hdr: dict[str, Any], body: bytearray) -> None:
        slot = self.free.pop()
        workdir = self.make_workdir(slot)
        out_r, out_w = os.pipe()
        v_r, v_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            child_main(self.cfg, slot, hdr, body, out_w, v_w, workdir)
        os.close(out_w)
        os.close(v_w)
        run = Run(pid, slot, int(hdr["id"]), float(hdr["timeout"]), out_r, v_r, workdir)
        self.runs[pid] = run
        for fd, kind in ((out_r, "o"), (v_r, "v")):
            os.set_blocking(fd, False)
            self.by_fd[fd] = (run, kind)
            self.sel.register(fd, selectors.EVENT_READ, "pipe")

    # -- children
    def pump(self, fd: int) -> None:
        run, kind = self.by_fd[fd]
        view = memoryview(self.scratch)
        while True:
            try:
                n = os.readv(fd, [view])
            except BlockingIOError:
                return
            except OSError:
                n = 0
            if n == 0:
                self.close_fd(fd)
                return
            if kind == "o":
                run.out_total += n
                keep = max(0, min(n, int(self.cfg["out_keep"]) - (run.out_total - n)))
                if keep:
                    self.send({"id": run.job_id, "k": "o"}, view[:keep])
                if run.out_total > int(self.cfg["out_limit"]) and not run.overflow:
                    run.overflow = True
                    self.kill(run)
            else:
                run.v_total += n
                if run.v_total > int(self.cfg["verdict_limit"]):
                    run.overflow = True
                    self.kill(run)
                else:
                    self.send({"id": run.job_id, "k": "v"}, view[:n])
            view[:n] = bytes(n)

    def close_fd(self, fd: int) -> None:
        self.sel.unregister(fd)
        os.close(fd)
        del self.by_fd[fd]

    def kill(self, run: Run) -> None:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(run.pid, signal.SIGKILL)
        except OSError:
            pass

    def sweep(self, run: Run) -> None:
        """Kill whatever the job left behind: its process group, then every process of its uid."""
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except OSError:
            pass
        if not self.cfg["drop_uid"] or _uid_procs(int(self.cfg["uid_base"]) + run.slot) == 0:
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                uid = int(self.cfg["uid_base"]) + run.slot
                os.setresuid(uid, uid, uid)
                code = _kill_uid(uid)
            finally:
                _exit(code)
        os.waitpid(pid, 0)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.get(pid)
            if run is not None and run.status is None:
                run.status = status
                run.duration = time.monotonic() - run.start

    def finish(self, run: Run) -> None:
        self.sweep(run)
        for fd in (run.out_r, run.v_r):
            # the fd number may already belong to a newer job if this one hit EOF earlier
            if self.by_fd.get(fd, (None,))[0] is run:
                self.pump(fd)
            if self.by_fd.get(fd, (None,))[0] is run:
                self.close_fd(fd)
        shutil.rmtree(run.workdir, ignore_errors=True)
        status = run.status or 0
        code = os.waitstatus_to_exitcode(status)
        self.send({"id": run.job_id, "k": "d", "exit": code, "timeout": run.timed_out,
                   "overflow": run.overflow, "duration": round(run.duration, 6)})
        del self.runs[run.pid]
        self.free.append(run.slot)

    def check_deadlines(self) -> float | None:
        now = time.monotonic()
        nearest: float | None = None
        for run in self.runs.values():
            if run.status is not None:
                continue
            if now >= run.deadline and not run.timed_out:
                run.timed_out = True
                self.kill(run)
            elif not run.timed_out:
                left = run.deadline - now
                nearest = left if nearest is None else min(nearest, left)
        return nearest

    def loop(self) -> None:
        while not (self.eof and not self.runs):
            want_jobs = bool(self.free) and not self.eof
            if want_jobs != self.jobs_registered:
                (self.sel.register(0, selectors.EVENT_READ, "jobs") if want_jobs else self.sel.unregister(0))
                self.jobs_registered = want_jobs
            timeout = self.check_deadlines()
            for key, _ in self.sel.select(timeout):
                if key.data == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif key.data == "jobs":
                    if self.free and not self.eof:
                        self.accept_job()
                elif key.fd in self.by_fd:
                    self.pump(key.fd)
            self.reap()
            for run in [r for r in self.runs.values() if r.status is not None]:
                self.finish(run)


def main() -> None:
    global JOB_FILTER
    cfg = json.loads(sys.argv[1])
    if "probe_seccomp" in cfg:
        report = probe_seccomp(list(cfg["probe_seccomp"]))
        os.write(1, (json.dumps(report) + "\n").encode())
        _exit(0)
    for name in WARM_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    if cfg["seccomp"]:
        JOB_FILTER = job_filter(load_seccomp(cfg["seccomp"]), bool(cfg["allow_fork"]), os.getpid())
    os.makedirs(cfg["tmp_root"], exist_ok=True)
    sys.stdout = sys.stderr  # stray prints must never corrupt the protocol on fd 1
    Zygote(cfg).loop()


if __name__ == "__main__":
    main()
