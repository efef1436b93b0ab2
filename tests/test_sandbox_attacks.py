"""Attack suite: each hostile program must end with the right verdict (never pass), leave the grader alive
and the machine clean (no leftover process, no file outside its temp dir, no connection), and the next
sample must be graded normally. The whole suite runs in a few seconds."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

import pytest

from shepherd_bench.sandbox import Job, SandboxConfig, Verdict, detect_isolation, run_batch

GOOD = Job("def f(x):\n    return x + 1\n", "assert f(1) == 2\nfor i in range(3):\n    assert f(i) == i + 1\n")
SECRET = "sk-shepherd-test-secret-8d2f"
HOST_DUMPS = ("/tmp/shepherd_keys", "/var/tmp/shepherd_keys", "/dev/shm/shepherd_keys")
UID_BASE = SandboxConfig().uid_base


def _job(program: str, tests: str = "assert f(1) == 2\n", timeout: float = 2.0, memory_mb: int = 512) -> Job:
    return Job(textwrap.dedent(program), textwrap.dedent(tests), timeout, memory_mb)


def attacks(canary: Path, port: int) -> dict[str, tuple[Job, set[str]]]:
    """name -> (job, acceptable statuses)."""
    fail = {"fail"}
    return {
        "fork_bomb": (_job("import os\nwhile True:\n    os.fork()\n"), fail),
        "memory_hog_10gb": (_job("x = bytearray(10 * 1024 ** 3)\n"), fail),
        "memory_hog_gradual": (_job("xs = []\nwhile True:\n    xs.append(bytearray(50 * 2 ** 20))\n",
                                   timeout=10.0, memory_mb=256), fail),
        "infinite_loop": (_job("while True:\n    pass\n", timeout=1.0), {"timeout"}),
        "c_level_regex": (_job("import re\nre.match(r'(a*)*b', 'a' * 64)\n", timeout=1.0), {"timeout"}),
        "c_level_arithmetic": (_job("x = 9 ** (9 ** 11)\n", timeout=1.0), {"timeout"}),
        "files_outside": (_job(f"""
            import os, shutil
            done = []
            for path in [{str(canary / 'pwned.txt')!r}, '/tmp/shepherd_pwned', '/root/shepherd_pwned',
                         os.path.expanduser('~/../shepherd_pwned'), '/var/tmp/shepherd_pwned',
                         '/dev/shm/shepherd_pwned', '/usr/shepherd_pwned']:
                try:
                    open(path, 'w').write('x'); done.append(path)
                except OSError:
                    pass
            for path in [{str(canary / 'canary.txt')!r}, '/etc/hostname']:
                try:
                    os.remove(path); done.append(path)
                except OSError:
                    pass
            try:
                shutil.rmtree({str(canary)!r}); done.append('rmtree')
            except OSError:
                pass
            raise SystemExit(repr(done))
            """), fail),
        "socket_loopback": (_job(f"""
            import socket
            s = socket.create_connection(('127.0.0.1', {port}), timeout=1)
            s.sendall(b'leak')
            """), fail),
        "socket_outside": (_job("""
            import socket
            socket.create_connection(('1.1.1.1', 53), timeout=1)
            """), fail),
        "kill_parent": (_job("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"), fail),
        "kill_process_group": (_job("import os, signal\nos.killpg(0, signal.SIGKILL)\n"), fail),
        "kill_minus_one": (_job("import os, signal\nos.kill(-1, signal.SIGKILL)\n"), fail),
        "kill_pid_1": (_job("import os, signal\nos.kill(1, signal.SIGKILL)\n"), fail),
        "setsid_daemon": (_job("""
            import os, time
            if os.fork() == 0:
                os.setsid()
                time.sleep(60)
            """), fail),
        "output_1gb": (_job("""
            import sys
            chunk = 'x' * (1 << 20)
            for _ in range(1024):
                sys.stdout.write(chunk)
            """, timeout=10.0), fail),
        "output_1gb_raw_fd": (_job("""
            import os
            chunk = b'y' * (1 << 20)
            for _ in range(1024):
                os.write(2, chunk)
            """, timeout=10.0), fail),
        "sys_exit_0": (_job("import sys\ndef f(x):\n    return 0\nsys.exit(0)\n"), fail),
        "os_exit_0": (_job("import os\ndef f(x):\n    return 0\nos._exit(0)\n"), fail),
        "exit_in_candidate": (_job("import os\ndef f(x):\n    os._exit(0)\n"), fail),
        "eq_always_true": (_job("""
            class Anything:
                def __eq__(self, other):
                    return True
                def __ne__(self, other):
                    return False
            def f(x):
                return Anything()
            """), fail),
        "int_subclass_eq": (_job("""
            class Liar(int):
                def __eq__(self, other):
                    return True
                __hash__ = int.__hash__
            def f(x):
                return Liar(0)
            """), fail),
        "eq_loop_test": (_job("""
            class Anything:
                def __eq__(self, other):
                    return True
            def f(x):
                return Anything()
            """, "for i in range(3):\n    assert f(i) == i + 1\n"), fail),
        "shadow_builtin": (_job("""
            def abs(x):
                return 0
            def f(x):
                return 99
            """, "for i in range(3):\n    assert abs(f(i) - (i + 1)) < 1e-6\n"), fail),
        "patch_builtins_module": (_job("""
            import builtins
            builtins.abs = lambda x: 0
            builtins.all = lambda xs: True
            def f(x):
                return 99
            """, "assert all(f(i) == i + 1 for i in range(3))\nassert abs(f(1) - 2) < 1e-6\n"), fail),
        "patch_assertion_error": (_job("""
            import builtins
            class Ignored(BaseException):
                pass
            builtins.AssertionError = Ignored
            def f(x):
                return 99
            """, "for i in range(3):\n    assert f(i) == i + 1\n"), fail),
        "stack_frame_forgery": (_job("""
            import sys, os, json
            def f(x):
                frame = sys._getframe()
                while frame is not None:
                    chan = frame.f_locals.get('chan')
                    if chan is not None:
                        os.write(chan.fd, (json.dumps({'k': 'end', 'ok': True, 'n': chan.nonce}) + '\\n').encode())
                        os._exit(0)
                    frame = frame.f_back
                return 0
            """), fail),
        "verdict_fd_forgery": (_job("""
            import os
            for fd in range(3, 64):
                try:
                    os.write(fd, b'{"k": "end", "ok": true}\\n')
                except OSError:
                    pass
            os._exit(0)
            """), fail),
        "env_secrets": (_job("""
            import os
            seen = dict(os.environ)
            for pid in ['self', '1', str(os.getppid())]:
                try:
                    seen[pid] = open(f'/proc/{pid}/environ', 'rb').read().decode('latin-1')
                except OSError:
                    pass
            raise RuntimeError(repr(seen))
            """), fail),
        # Finds a key wherever the grader's own /proc/<pid>/environ is visible (tests/test_sandbox_pip_only.py
        # starts the grader with one), and writes what it found to host paths.
        "api_key_dump_to_host": (_job("""
            import os, re
            texts = ['\\n'.join(f'{k}={v}' for k, v in os.environ.items())]
            for pid in os.listdir('/proc'):
                for part in ('environ', 'cmdline'):
                    try:
                        texts.append(open(f'/proc/{pid}/{part}', 'rb').read().decode('latin-1'))
                    except OSError:
                        pass
            keys = sorted(set(re.findall(r'sk-[A-Za-z0-9-]+', '\\n'.join(texts))))
            for path in HOST_DUMPS:
                try:
                    open(path, 'w').write('\\n'.join(keys + texts))
                except OSError:
                    pass
            print(keys)
            raise RuntimeError(repr(keys))
            """.replace("HOST_DUMPS", repr([str(canary / "keys.txt"), *HOST_DUMPS]))), fail),
    }


def _sandbox_processes() -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                uid = next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if UID_BASE <= uid < UID_BASE + 256:
            pids.append(int(name))
    return pids


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Verdict, Verdict, set[str]]]:
    canary = tmp_path_factory.mktemp("canary")
    (canary / "canary.txt").write_text("intact")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.0)
    port = listener.getsockname()[1]
    table = attacks(canary, port)
    jobs: list[Job] = []
    for job, _ in table.values():
        jobs += [job, GOOD]
    os.environ["SHEPHERD_SANDBOX_TEST_SECRET"] = SECRET
    try:
        verdicts = run_batch(jobs, workers=2)
    finally:
        del os.environ["SHEPHERD_SANDBOX_TEST_SECRET"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()
    assert (canary / "canary.txt").read_text() == "intact"
    assert not (canary / "pwned.txt").exists() and not (canary / "keys.txt").exists()
    for path in ("/tmp/shepherd_pwned", "/root/shepherd_pwned", "/var/tmp/shepherd_pwned", "/dev/shm/shepherd_pwned",
                 *HOST_DUMPS):
        assert not os.path.exists(path), path  # False, not an error, where this uid may not look (/root)
    assert _sandbox_processes() == []
    return {name: (verdicts[2 * i], verdicts[2 * i + 1], ok) for i, (name, (_, ok)) in enumerate(table.items())}


ATTACKS = list(attacks(Path("/nonexistent"), 1))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_is_stopped(outcome: dict[str, tuple[Verdict, Verdict, set[str]]], name: str) -> None:
    verdict, after, acceptable = outcome[name]
    assert verdict.status in acceptable, verdict
    assert not verdict.passed
    assert after.passed, f"the sample after {name} was not graded normally: {after}"
    assert SECRET not in verdict.detail + verdict.output


def test_attacks_are_quick(outcome: dict[str, tuple[Verdict, Verdict, set[str]]]) -> None:
    slow = {n: v.duration_s for n, (v, _, _) in outcome.items() if v.duration_s > 3.0}
    assert not slow


def test_forked_attacks_contained_when_fork_is_allowed(tmp_path: Path) -> None:
    """With fork allowed (seccomp no longer blocks it) the uid drop, RLIMIT_NPROC and the sweep hold."""
    if not detect_isolation()["uid_drop"]:
        pytest.skip("needs root for the per-slot uid")
    cfg = SandboxConfig(allow_fork=True)
    bomb = _job("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                timeout=1.0)
    daemon = _job("""
        import os, time
        if os.fork() == 0:
            try:
                os.setsid()
            except OSError:
                pass
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        """)
    kill_all = _job("import os, signal\nif os.fork() == 0:\n    os.kill(-1, signal.SIGKILL)\nimport time\ntime.sleep(0.2)\n")
    verdicts = run_batch([bomb, GOOD, daemon, GOOD, kill_all, GOOD], workers=2, config=cfg)
    assert [v.status for v in verdicts[1::2]] == ["pass"] * 3
    assert verdicts[0].status in {"timeout", "fail"}
    assert verdicts[2].status == "fail" and verdicts[4].status == "fail"
    assert _sandbox_processes() == []


@pytest.mark.xfail(strict=True, reason="residual risk: non-literal asserts are judged in-process; code that "
                   "walks frames can forge their verdict (docs/SANDBOX.md)")
def test_frame_forgery_of_in_process_asserts_is_stopped() -> None:
    forged = _job("""
        import sys, os, json
        def f(x):
            frame = sys._getframe()
            while frame is not None:
                chan = frame.f_locals.get('chan')
                if chan is not None:
                    os.write(chan.fd, (json.dumps({'k': 'end', 'ok': True, 'n': chan.nonce}) + '\\n').encode())
                    os._exit(0)
                frame = frame.f_back
            return 0
        """, "expected = [2]\nassert f(1) == expected[0]\n")
    assert not run_batch([forged])[0].passed
