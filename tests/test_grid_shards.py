"""A grid built in slices and merged is the one-process grid, byte for byte (scripted models: no timing
differs), and a slice killed mid-batch resumes with only its unfinished calls (the generation cache keeps
every finished one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from shepherd_bench.backends.base import GenRequest, GenResult
from shepherd_bench.backends.cache import CachedBackend, GenerationCache
from shepherd_bench.backends.meter import MeteredBackend
from shepherd_bench.cli import build_parser, main
from shepherd_bench.config import ModelConfig
from shepherd_bench.research.grid import (
    GridConfig,
    GridError,
    GridSpec,
    GridStore,
    Shard,
    build_grid,
    mark_shard_finished,
    merge_shards,
    scale_plan,
    shard_manifest,
)
from shepherd_bench.strategies.base import ModelPair, Query
from shepherd_bench.tasks.base import Dataset, Doc, Score, chat
from tests.scripted import ScriptedBackend, count

N = 7
LLM_LEN = {f"q{i}": 3 + (i * 5) % 8 for i in range(N)}  # LLM answer tokens per query
NEED = {f"q{i}": None if i % 5 == 4 else (i * 3) % 6 for i in range(N)}  # hint tokens the SLM needs


class Task:
    name: ClassVar[str] = "scripted"
    kind: ClassVar[Literal["code", "math"]] = "math"
    max_tokens: ClassVar[int] = 30

    def load(self, data_dir: Path | None = None) -> Dataset:
        return Dataset([Doc(q, q) for q in LLM_LEN], "memory", "0" * 64)

    def query(self, doc: Doc) -> Query:
        return Query(id=doc.id, messages=chat("sys", doc.prompt), max_tokens=self.max_tokens)

    def score(self, docs: list[Doc], answers: list[str], workers: int | None = None) -> list[Score]:
        # the SLM's "ok" is right; the LLM's answer is right for even queries
        ok = [a.endswith("ok") or (a.startswith("a0") and int(d.id[1:]) % 2 == 0) for d, a in zip(docs, answers)]
        return [Score(o, "pass" if o else "fail", extracted=a[-2:]) for o, a in zip(ok, answers, strict=True)]


def llm_answer(req: GenRequest) -> str:
    return " ".join(f"a{i}" for i in range(LLM_LEN[req.messages[-1].content]))


def slm_answer(req: GenRequest) -> str:
    need = NEED[req.messages[-1].content]
    lucky = req.temperature > 0 and (req.seed or 0) % 2 == 1  # a second sample may do better
    return "ok" if need is not None and count(req.prefix) + lucky >= need else "no"


class Streaming(ScriptedBackend):
    """Hands each result over as it is made (as llama.cpp does); dies after ``die_after`` of them."""

    streams_results = True

    def __init__(self, *args: Any, die_after: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.die_after = die_after
        self.made = 0

    def generate(self, requests: list[GenRequest], *, progress: bool = False,
                 on_result: Any = None) -> list[GenResult]:
        out = []
        for i, r in enumerate(requests):
            if self.die_after is not None and self.made >= self.die_after:
                raise KeyboardInterrupt("killed")
            self.requests.append(r)
            out.append(self._one(r))
            self.made += 1
            if on_result is not None:
                on_result(i, out[-1])
        return out


def pair(cache: GenerationCache | None = None, die_after: int | None = None) -> tuple[ModelPair, Streaming]:
    small = Streaming(slm_answer, name="small", die_after=die_after)
    large = Streaming(llm_answer, name="large")

    def wrap(b: Streaming, role: str) -> MeteredBackend:
        return MeteredBackend(CachedBackend(b, cache) if cache else b, role)  # type: ignore[arg-type]

    return ModelPair(wrap(small, "small"), wrap(large, "large")), small


def config(spec: GridSpec, batch_size: int) -> GridConfig:
    return GridConfig("scripted", ModelConfig("scripted:small", "free", {}),
                      ModelConfig("scripted:large", "free", {}), spec, batch_size=batch_size)


def manifest(cfg: GridConfig) -> dict[str, Any]:
    return {"kind": "hint-grid", "fingerprint": cfg.fingerprint(), "n_queries": N, "config": cfg.measured(),
            "slm": {"spec": cfg.slm.spec}, "llm": {"spec": cfg.llm.spec}, "argv": ["x"], "created": "t0"}


def build_whole(root: Path, cfg: GridConfig) -> None:
    store = GridStore(root)
    store.open(manifest(cfg), cfg.fingerprint())
    build_grid(Task(), Task().load().docs, pair()[0], cfg.spec, store, batch_size=cfg.batch_size)


def build_slice(root: Path, cfg: GridConfig, shard: Shard, models: ModelPair | None = None) -> None:
    """What ``execute_grid(cfg, shard=shard)`` does, on the scripted models."""
    docs = Task().load().docs
    store = GridStore(shard.folder(root))
    store.open(shard_manifest(manifest(cfg), shard, [d.id for d in docs]), cfg.fingerprint())
    build_grid(Task(), shard.take(docs), models or pair()[0], cfg.spec, store, batch_size=cfg.batch_size)
    mark_shard_finished(store)


CASES = {
    "fractions-3-slices": (GridSpec(levels=(0.0, 0.3, 0.6, 1.0)), 3, 3),
    "tokens-2-samples": (GridSpec(levels=(0, 2, 5), kind="tokens", samples=2, temperature=0.5), 2, 2),
    "early-stop-one-chunk": (GridSpec(levels=(0.0, 0.2, 0.5, 1.0), early_stop=True), 0, 4),
    "more-slices-than-a-chunk": (GridSpec(levels=(0, 3), kind="tokens"), 2, 5),
}


@pytest.mark.parametrize("case", CASES)
def test_merged_slices_are_the_one_process_grid(tmp_path: Path, case: str) -> None:
    spec, batch, n = CASES[case]
    cfg = config(spec, batch)
    build_whole(tmp_path / "one", cfg)
    for i in reversed(range(n)):  # any order
        build_slice(tmp_path / "sliced", cfg, Shard(i, n))
    stats = merge_shards(tmp_path / "sliced", cfg)
    assert (stats.shards, stats.queries) == (n, N)
    for name in ("grid.jsonl", "llm.jsonl"):
        assert (tmp_path / "sliced" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    merged = json.loads((tmp_path / "sliced" / "manifest.json").read_text())
    assert merged.pop("sharded") == {"count": n, "rule": "query position in the selection mod count"}
    differ = {"argv", "created"}
    assert {k: v for k, v in merged.items() if k not in differ} == {k: v for k, v in one.items() if k not in differ}
    merge_shards(tmp_path / "sliced", cfg)  # a second merge rewrites the same grid
    assert (tmp_path / "sliced" / "grid.jsonl").read_bytes() == (tmp_path / "one" / "grid.jsonl").read_bytes()


def test_a_killed_slice_resumes_with_only_its_unfinished_calls(tmp_path: Path) -> None:
    cfg = config(GridSpec(levels=(0, 2, 5), kind="tokens"), 64)
    shard = Shard(0, 2)
    reference, small = pair()
    build_slice(tmp_path / "ref", cfg, shard, reference)
    cache = GenerationCache(tmp_path / "cache.sqlite")
    killed, small_killed = pair(cache, die_after=6)
    with pytest.raises(KeyboardInterrupt):
        build_slice(tmp_path / "g", cfg, shard, killed)  # dies in the middle of level 2's batch
    build_slice(tmp_path / "g", cfg, Shard(1, 2))
    with pytest.raises(GridError, match=r"slice 0/2 is not finished.*--shard 0/2"):
        merge_shards(tmp_path / "g", cfg, 2)
    resumed, small_resumed = pair(cache)
    build_slice(tmp_path / "g", cfg, shard, resumed)
    cache.close()
    keys = [r.key_dict() for r in small.requests]
    finished = [r.key_dict() for r in small_killed.requests]
    redone = [r.key_dict() for r in small_resumed.requests]
    assert len(finished) == 6 and 0 < len(redone) == len(keys) - 6
    assert sorted(map(json.dumps, finished + redone)) == sorted(map(json.dumps, keys))  # nothing asked twice
    a, b = GridStore(shard.folder(tmp_path / "ref")), GridStore(shard.folder(tmp_path / "g"))
    assert sorted(map(json.dumps, a.rows())) == sorted(map(json.dumps, b.rows()))


def test_merge_refuses_missing_unfinished_or_foreign_slices(tmp_path: Path) -> None:
    cfg = config(GridSpec(levels=(0.0, 1.0)), 64)
    with pytest.raises(GridError, match="no slices; build them with --shard"):
        merge_shards(tmp_path, cfg)
    build_slice(tmp_path, cfg, Shard(0, 2))
    with pytest.raises(GridError, match=r"slice\(s\) 1/2 not built yet.*--shard 1/2"):
        merge_shards(tmp_path, cfg)
    build_slice(tmp_path, cfg, Shard(1, 2))
    other = config(GridSpec(levels=(0.0, 0.5, 1.0)), 64)
    with pytest.raises(GridError, match="another configuration"):
        merge_shards(tmp_path, other)
    build_slice(tmp_path, cfg, Shard(0, 3))
    with pytest.raises(GridError, match=r"slices of \[2, 3\] shards"):
        merge_shards(tmp_path, cfg)
    merge_shards(tmp_path, cfg, 2)
    build_whole(tmp_path / "one", cfg)
    build_slice(tmp_path / "one", cfg, Shard(0, 1))
    with pytest.raises(GridError, match="built in one process"):
        merge_shards(tmp_path / "one", cfg)


def test_merge_refuses_another_batch_size_than_the_slices(tmp_path: Path) -> None:
    cfg = config(GridSpec(levels=(0.0, 1.0)), 2)
    docs = Task().load().docs
    for i in range(2):
        shard = Shard(i, 2)
        store = GridStore(shard.folder(tmp_path))
        store.open(shard_manifest({**manifest(cfg), "batch_size": 2}, shard, [d.id for d in docs]), cfg.fingerprint())
        build_grid(Task(), shard.take(docs), pair()[0], cfg.spec, store, batch_size=2)
        mark_shard_finished(store)
    with pytest.raises(GridError, match="built with --batch-size 2; merge with the same --batch-size"):
        merge_shards(tmp_path, config(cfg.spec, 3))
    assert merge_shards(tmp_path, cfg).queries == N


def test_shard_slices_and_flags() -> None:
    assert Shard.parse("1/3").take(list(range(8))) == [1, 4, 7]
    assert [Shard(1, 3).position(i) for i in range(3)] == [1, 4, 7]
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(GridError, match="I/N"):
            Shard.parse(bad)
    grid = ["grid", "--task", "gsm8k"]
    for extra, msg in ((["--ray"], "add --shards N"), (["--shard", "0/2", "--merge"], "give one"),
                       (["--shards", "2", "--ray-address", "auto"], "go with --ray"),
                       (["--shards", "0"], "positive")):
        with pytest.raises(GridError, match=msg):
            scale_plan(build_parser().parse_args(grid + extra))
    shard, ray = scale_plan(build_parser().parse_args(grid + ["--shards", "2", "--ray", "--ray-gpus", "1"]))
    assert shard is None and ray is not None and (ray.num_gpus, ray.num_cpus, ray.address) == (1.0, 1.0, None)


def test_grid_help_documents_the_scale_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["grid", "--help"])
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--shard I/N", "--shards N", "--merge", "--ray ", "--ray-address",
                                        "--ray-gpus", "docs/SCALE.md"))


def test_merge_without_slices_is_one_line_naming_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grid", "--task", "gsm8k", "--out", str(tmp_path / "g"), "--merge"]) == 2
    assert "no slices; build them with --shard I/N first" in capsys.readouterr().err
