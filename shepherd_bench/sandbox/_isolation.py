"""Detect which isolation layers this machine offers and build the command that starts a worker pool."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"


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
class Layers:
    namespace: str  # bubblewrap | unshare | none
    uid_drop: bool
    seccomp: bool
    interpreter: str

    @property
    def network_isolated(self) -> bool:
        return self.namespace != "none"

    def missing(self) -> list[str]:
        out = []
        if not self.network_isolated:
            out.append("network (no bubblewrap or unshare: sandboxed code can open connections)")
        if self.namespace != "bubblewrap":
            out.append("filesystem view (no bubblewrap: code sees the host filesystem, limited by uid only)")
        if not self.uid_drop:
            out.append("uid drop (not root: RLIMIT_NPROC and kill(-1) protection rely on seccomp only)")
        if not self.seccomp:
            out.append("seccomp (install python3-seccomp: fork bombs, daemons and sockets are less contained)")
        return out


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def interpreter(cfg: SandboxConfig) -> str:
    if cfg.interpreter:
        return cfg.interpreter
    return SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else sys.executable


@functools.lru_cache(maxsize=8)
def probe(python: str) -> Layers:
    """Try each layer for real once per process (about 0.1 s)."""
    root = os.geteuid() == 0
    bwrap = shutil.which("bwrap")
    namespace = "none"
    if bwrap and _works([*bwrap_prefix(bwrap, python, 64), python, "-c", "0"]):
        namespace = "bubblewrap"
    elif shutil.which("unshare") and _works(["unshare", "--net", "true"]) and root:
        namespace = "unshare"
    has_seccomp = _works([python, "-c", "import seccomp"])
    return Layers(namespace, root, has_seccomp, python)


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
    if layers.namespace == "bubblewrap":
        bwrap = shutil.which("bwrap") or "bwrap"
        return [*bwrap_prefix(bwrap, layers.interpreter, cfg.tmpfs_mb_per_worker * workers), *tail]
    if layers.namespace == "unshare":
        return ["unshare", "--net", "--", *tail]
    return tail


_warned: set[str] = set()


def warn_missing(layers: Layers, cfg: SandboxConfig) -> None:
    missing = layers.missing()
    for need in cfg.require:
        if any(m.startswith(need) for m in missing):
            raise RuntimeError(f"sandbox layer '{need}' is required but unavailable: run "
                               "scripts/install_sandbox_deps.sh (as root) or drop it from SandboxConfig.require")
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
        "seccomp": layers.seccomp,
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
