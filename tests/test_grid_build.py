"""Hint grid on a scripted backend: exact costs per level, one batched SLM call per level, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from shepherd_bench.backends.base import BackendIdentity, GenRequest, GenResult
from shepherd_bench.backends.meter import MeteredBackend
from shepherd_bench.research.grid import (
    GridError,
    GridSpec,
    GridStore,
    build_grid,
    hint_size,
    load_grid,
    parse_levels,
)
from shepherd_bench.strategies.base import ModelPair, Query
from shepherd_bench.tasks.base import Dataset, Doc, Score, chat

# Query "q<i>" needs a hint of NEED[i] LLM tokens for the SLM to succeed (None: never).
NEED = {"q0": 0, "q1": 3, "q2": 7, "q3": None}
LLM_TOKENS = {"q0": 10, "q1": 10, "q2": 8, "q3": 5}
PROMPT_TOKENS = {"q0": 11, "q1": 12, "q2": 13, "q3": 14}


class ScriptedTask:
    name: ClassVar[str] = "scripted"
    kind: ClassVar[Literal["code", "math"]] = "math"
    max_tokens: ClassVar[int] = 40

    def __init__(self, llm_correct: bool = True) -> None:
        self.llm_correct = llm_correct
        self.score_calls = 0

    def load(self, data_dir: Path | None = None) -> Dataset:
        return Dataset([Doc(q, q) for q in NEED], "memory", "0" * 64)

    def query(self, doc: Doc) -> Query:
        return Query(id=doc.id, messages=chat("sys", doc.prompt), max_tokens=self.max_tokens)

    def score(self, docs: list[Doc], answers: list[str], workers: int | None = None) -> list[Score]:
        self.score_calls += 1
        out = []
        for _d, a in zip(docs, answers, strict=True):
            ok = a.endswith("OK") or (a.startswith("L") and a.endswith("|") and self.llm_correct)
            out.append(Score(ok, "pass" if ok else "fail", extracted=a[-2:]))
        return out


class ScriptedBackend:
    """LLM: the answer 'L0|L1|...' as tokens; SLM: 'OK' when the prefix holds enough LLM tokens."""

    def __init__(self, role: str, fail_after: int | None = None) -> None:
        self.role = role
        self.calls: list[list[GenRequest]] = []
        self.fail_after = fail_after

    @property
    def identity(self) -> BackendIdentity:
        return BackendIdentity(kind="scripted", model=self.role)

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append(list(requests))
        return [self._one(r) for r in requests]

    def _one(self, r: GenRequest) -> GenResult:
        qid = r.messages[-1].content
        if self.role == "large":
            toks = [f"L{i}|" for i in range(LLM_TOKENS[qid])]
            return GenResult("".join(toks), PROMPT_TOKENS[qid], len(toks), tokens=toks,
                             finish_reason="stop")
        k = r.prefix.count("|")
        need = NEED[qid]
        text = "OK" if need is not None and k >= need else "no"
        return GenResult(text, PROMPT_TOKENS[qid] + k, 1, tokens=[text],
                         token_logprobs=[-0.5] if r.logprobs else None)

    def close(self) -> None:
        pass


def models(small: ScriptedBackend, large: ScriptedBackend) -> ModelPair:
    return ModelPair(MeteredBackend(small, "small"), MeteredBackend(large, "large"))


def build(tmp: Path, spec: GridSpec, small: ScriptedBackend | None = None,
          large: ScriptedBackend | None = None, task: ScriptedTask | None = None) -> tuple[Any, ...]:
    task = task or ScriptedTask()
    small, large = small or ScriptedBackend("small"), large or ScriptedBackend("large")
    store = GridStore(tmp)
    store.open({"kind": "hint-grid", "fingerprint": "fp"}, "fp")
    stats = build_grid(task, task.load().docs, models(small, large), spec, store)
    return stats, small, large, load_grid(tmp)


def test_hint_size_rounds_half_up_and_caps() -> None:
    assert hint_size(0.5, "fraction", 5) == 3
    assert hint_size(0.1, "fraction", 10) == 1
    assert hint_size(1.0, "fraction", 7) == 7
    assert hint_size(64, "tokens", 10) == 10
    assert parse_levels(None, "0,16,32") == ((0.0, 16.0, 32.0), "tokens")
    with pytest.raises(GridError):
        parse_levels("0,0.5", "0,16")
    with pytest.raises(GridError):
        GridSpec(levels=(0.0, 1.5))


def test_fraction_grid_exact_costs_and_one_call_per_level(tmp_path: Path) -> None:
    spec = GridSpec(levels=(0.0, 0.3, 0.5, 1.0))
    stats, small, large, df = build(tmp_path, spec)
    assert len(large.calls) == 1 and all(r.logprobs and r.temperature == 0 for r in large.calls[0])
    # levels 0, 0.3, 0.5 need the SLM (every query), 1.0 is the LLM answer graded: 3 SLM calls
    assert len(small.calls) == 3 and stats.slm_calls == 3
    assert [len(c) for c in small.calls] == [4, 4, 4]
    assert len(df) == 4 * 4
    q2 = df[df.query_id == "q2"].set_index("level")
    assert q2.loc[0.3, "hint_tokens"] == 2 and q2.loc[0.5, "hint_tokens"] == 4  # round(0.3*8)=2, 0.5*8=4
    assert q2.loc[1.0, "hint_tokens"] == 8 and bool(q2.loc[1.0, "full"])
    assert (q2["llm_input_tokens"] == 13).all() and (q2["llm_output_tokens"] == 8).all()
    assert q2.loc[0.5, "slm_input_tokens"] == 13 + 4
    assert q2.loc[1.0, "slm_input_tokens"] == 0
    assert q2.loc[0.0, "slm_mean_logprob"] == -0.5  # level 0 asks for logprobs (reactive features)
    q1 = df[df.query_id == "q1"].set_index("level")["correct"].to_dict()
    assert q1 == {0.0: 0.0, 0.3: 1.0, 0.5: 1.0, 1.0: 1.0}
    # the SLM's budget is the rest of the task's max tokens; greedy; hint = joined LLM tokens
    req = next(r for r in small.calls[1] if r.messages[-1].content == "q1")
    assert req.prefix == "L0|L1|L2|" and req.max_tokens == 40 - 3 and req.temperature == 0.0


def test_token_grid_adds_full_level_and_copies_full_rows(tmp_path: Path) -> None:
    spec = GridSpec(levels=(0, 4, 9), kind="tokens")
    _, small, _, df = build(tmp_path, spec)
    q3 = df[df.query_id == "q3"].set_index("level")  # 5 LLM tokens: 9 >= 5 is the full answer
    assert bool(q3.loc[9.0, "full"]) and q3.loc[9.0, "hint_tokens"] == 5
    q0 = df[df.query_id == "q0"].set_index("level")  # 10 LLM tokens: levels stop short -> level 10 added
    assert bool(q0.loc[10.0, "full"]) and not bool(q0.loc[9.0, "full"])
    assert sorted(q0.index) == [0.0, 4.0, 9.0, 10.0]
    assert len(small.calls) == 3  # levels 0, 4, 9 (q3's 9 is the LLM answer, no SLM)


def test_samples_use_temperature_and_distinct_seeds(tmp_path: Path) -> None:
    spec = GridSpec(levels=(0.0, 1.0), samples=3, temperature=0.8, seed=5)
    _, small, _, df = build(tmp_path, spec)
    reqs = [r for r in small.calls[0] if r.messages[-1].content == "q0"]
    assert [r.seed for r in reqs] == [5, 6, 7] and all(r.temperature == 0.8 for r in reqs)
    assert len(df[(df.query_id == "q0") & (df.level == 0.0)]) == 3
    assert len(df[(df.query_id == "q0") & (df.level == 1.0)]) == 1  # the one greedy LLM answer


def test_early_stop_skips_levels_after_success(tmp_path: Path) -> None:
    spec = GridSpec(levels=(0.0, 0.3, 0.5, 1.0), early_stop=True)
    _, small, _, df = build(tmp_path, spec)
    assert sorted(df[df.query_id == "q0"].level) == [0.0]
    assert sorted(df[df.query_id == "q1"].level) == [0.0, 0.3]
    assert sorted(df[df.query_id == "q3"].level) == [0.0, 0.3, 0.5, 1.0]
    assert [len(c) for c in small.calls] == [4, 3, 2]


def test_resume_after_interruption_redoes_nothing(tmp_path: Path) -> None:
    spec = GridSpec(levels=(0.0, 0.3, 0.5, 1.0))
    ref = build(tmp_path / "ref", spec)[3]
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "g", spec, small=ScriptedBackend("small", fail_after=2))
    partial = GridStore(tmp_path / "g").rows()
    assert {r["level"] for r in partial} == {0.0, 0.3}
    with open(tmp_path / "g" / "grid.jsonl", "a") as f:
        f.write('{"query_id": "q0", "lev')  # a torn last line from the kill
    stats, small, large, df = build(tmp_path / "g", spec)
    assert len(large.calls) == 0  # the LLM answers were stored
    assert len(small.calls) == 1 and stats.rows_written == 8  # level 0.5 (SLM) and 1.0 (LLM answer)
    cols = ["query_id", "level", "hint_tokens", "correct", "slm_input_tokens"]
    key = ["query_id", "level"]
    assert df[cols].sort_values(key).reset_index(drop=True).equals(ref[cols].sort_values(key).reset_index(drop=True))


def test_missing_tokens_fail_clearly(tmp_path: Path) -> None:
    class NoTokens(ScriptedBackend):
        def _one(self, r: GenRequest) -> GenResult:
            res = super()._one(r)
            res.tokens = None
            return res

    with pytest.raises(GridError, match="no output token texts"):
        build(tmp_path, GridSpec(), large=NoTokens("large"))


def test_llm_jsonl_holds_prompt_and_tokens(tmp_path: Path) -> None:
    build(tmp_path, GridSpec(levels=(0.0, 1.0)))
    recs = [json.loads(x) for x in (tmp_path / "llm.jsonl").read_text().splitlines()]
    assert {r["query_id"] for r in recs} == set(NEED)
    r = next(r for r in recs if r["query_id"] == "q3")
    assert r["prompt"] == "q3" and r["output_tokens"] == 5 and r["tokens_join_to_text"]


def test_the_recorded_command_keeps_engine_options_and_never_a_secret() -> None:
    """Options that change no row (a larger llama.cpp slot) stay out of the fingerprint but in the
    manifest, so the grid's command reruns as it was built; anything that looks like a secret is dropped."""
    from shepherd_bench.config import ModelConfig
    from shepherd_bench.research.grid import GridConfig, GridSpec, engine_options, grid_command

    slm = ModelConfig("llamacpp:qwen2.5-coder-0.5b", "embedded-slm", options={"n_ctx_per_slot": 8192})
    llm = ModelConfig("openai:gpt-x", "gpt-x", options={"base_url": "http://h/v1", "api_key_env": "MY_KEY",
                                               "concurrency": 8, "extra": "sk-abc"})
    cfg = GridConfig("mbpp", slm, llm, GridSpec(levels=(0.0, 16.0), kind="tokens"))
    plain = GridConfig("mbpp", ModelConfig(slm.spec, slm.price),
                       ModelConfig(llm.spec, llm.price, options={"base_url": "http://h/v1"}), cfg.spec)
    assert cfg.fingerprint() == plain.fingerprint()  # engine options change no row
    assert engine_options(llm) == {"concurrency": 8}
    manifest = {"config": cfg.measured(), "llm": {"engine_options": engine_options(llm)},
                "slm": {"engine_options": engine_options(slm)}}
    cmd = grid_command(manifest)
    assert "--slm-opt n_ctx_per_slot=8192" in cmd and "--llm-opt base_url=http://h/v1" in cmd
    assert "--llm-opt concurrency=8" in cmd and "KEY" not in cmd and "sk-" not in cmd
