"""The hint grid: one greedy LLM answer per query, the SLM continuing from each hint size, all graded.

For every query the LLM is asked once, greedily, for its whole answer (with its output token texts),
continuing the query's known answer prefix (a code prompt's fence, signature and docstring: prefilled
input, never bought). The hint of ``k`` tokens is the first ``k`` of those tokens joined at a token boundary: under greedy decoding
that is what a live call with ``max_tokens=k`` returns, and it is priced as such at analysis time
(``llm_input_tokens * p_in + k * p_out``; ``k = 0`` costs nothing, the full answer costs its
``llm_output_tokens``). The SLM then continues the assistant turn from each hint (``GenRequest.prefix``),
``n`` samples per level (greedy when ``n = 1``; temperature > 0 with seeds ``seed + s`` otherwise), and
``hint + continuation`` is graded by the task's scorer, after the known answer prefix
(``Query.complete``). A level whose hint covers the whole LLM answer is the LLM's own answer graded (no
SLM call).

Every prompt of one level (over a chunk of queries) goes to the SLM in ONE batched ``generate`` call, so
llama.cpp / vLLM batch the prompts and reuse their shared prefixes.

Storage, one folder per grid: ``manifest.json`` (configuration, fingerprint, dataset sha256, versions),
``llm.jsonl`` (the LLM answer of each query: text, token texts, token counts, the user prompt) and
``grid.jsonl`` (one tidy row per query x level x sample). Appends are per level, so a killed grid
resumes at the first missing (query, level). ``load_grid(path)`` gives a pandas DataFrame.

Built in slices (``--shard I/N``: the queries at positions I mod N, each slice a grid folder under
``<grid>/shards/``; ``--shards N [--ray]`` builds them all, as Ray tasks with ``--ray``), a grid is merged
(``merge_shards``) into what one process writes, row for row; docs/SCALE.md.

``--early-stop`` builds predictor labels cheaply: a query stops at the first level at which every sample
succeeds. Later levels are then missing, so such a grid is NOT suitable for fixed-level curves (replay
refuses fixed policies on it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..backends.base import GenRequest, GenResult
from ..config import ConfigError, ModelConfig, RunConfig
from ..store import RunStore
from .ray_pool import RayOptions

if TYPE_CHECKING:
    import pandas as pd

    from ..strategies.base import ModelPair, Query
    from ..tasks.base import Doc, Score, Task

LevelKind = Literal["fraction", "tokens"]
DEFAULT_FRACTIONS = tuple(round(i / 10, 1) for i in range(11))
LLM_FILE = "llm.jsonl"
# 2: math prompts reason before the boxed answer; a code query's known answer prefix (fence, prompt) is
# prefilled for both models, so hints are body tokens only; rows carry the hint text.
PROTOCOL_VERSION = 2
GRID_FILE = "grid.jsonl"


class GridError(ConfigError):
    """A grid cannot be built or read as asked; the message names the fix."""


# --- configuration ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridSpec:
    """What a grid measures (besides the task and the models)."""

    levels: tuple[float, ...] = DEFAULT_FRACTIONS
    kind: LevelKind = "fraction"
    samples: int = 1
    temperature: float = 0.7  # used only when samples > 1
    early_stop: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise GridError("--samples must be >= 1")
        if self.kind == "fraction" and any(not 0.0 <= x <= 1.0 for x in self.levels):
            raise GridError("--levels are fractions of the LLM answer, between 0 and 1 (e.g. 0,0.1,...,1.0)")
        if self.kind == "tokens" and any(x < 0 or x != int(x) for x in self.levels):
            raise GridError("--tokens are non-negative whole token counts (e.g. 0,16,32,64)")
        if self.samples > 1 and self.temperature <= 0:
            raise GridError("--samples > 1 needs --temperature > 0 (distinct samples)")

    def all_levels(self) -> tuple[float, ...]:
        """The asked levels plus level 0 (SLM alone) and, for fractions, 1.0 (the LLM answer), sorted."""
        extra = {0.0, 1.0} if self.kind == "fraction" else {0.0}
        return tuple(sorted(set(map(float, self.levels)) | extra))

    @property
    def sampling_temperature(self) -> float:
        return self.temperature if self.samples > 1 else 0.0

    def sample_seed(self, sample: int) -> int:
        return self.seed + sample


@dataclass(frozen=True)
class GridConfig:
    task: str
    slm: ModelConfig
    llm: ModelConfig
    spec: GridSpec = field(default_factory=GridSpec)
    limit: int | None = None
    subset: int | None = None  # a seeded random subset of this many queries (seed = spec.seed)
    data_dir: str | None = None
    batch_size: int = 64  # queries per chunk (one SLM call per level per chunk)
    workers: int | None = None

    def measured(self) -> dict[str, Any]:
        """Fields that change what a row means; ``limit`` is left out so a grid can be extended."""
        d: dict[str, Any] = {"task": self.task, "spec": asdict(self.spec), "subset": self.subset,
                             "protocol": PROTOCOL_VERSION}
        for role, m in (("slm", self.slm), ("llm", self.llm)):
            d[role] = {"spec": m.spec, "options": {k: v for k, v in m.options.items() if k == "base_url"}}
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.measured(), sort_keys=True).encode()).hexdigest()[:10]

    def default_dir(self, root: Path = Path("grids")) -> Path:
        sub = f"-sub{self.subset}" if self.subset else ""
        return root / f"{self.task}-{self.spec.kind}-n{self.spec.samples}{sub}-{self.fingerprint()}"

    def run_config(self) -> RunConfig:
        """The run configuration whose model-building pieces the grid reuses."""
        return RunConfig(task=self.task, strategy="grid", strategy_params={}, slm=self.slm, llm=self.llm,
                         limit=self.limit, seed=self.spec.seed, data_dir=self.data_dir,
                         batch_size=self.batch_size, workers=self.workers)


def parse_levels(levels: str | None, tokens: str | None) -> tuple[tuple[float, ...], LevelKind]:
    if levels and tokens:
        raise GridError("give --levels (fractions) or --tokens (token counts), not both")
    text, kind = (tokens, "tokens") if tokens else (levels, "fraction")
    if not text:
        return DEFAULT_FRACTIONS, "fraction"
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise GridError(f"bad level list {text!r}; use comma-separated numbers like 0,0.1,0.5,1.0") from None
    if not vals:
        raise GridError("empty level list")
    return vals, kind  # type: ignore[return-value]


# --- storage ------------------------------------------------------------------------------------------

class GridStore:
    """A grid folder: manifest.json, llm.jsonl, grid.jsonl (append-only, torn last lines repaired)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest_path = root / "manifest.json"
        self.llm_path = root / LLM_FILE
        self.grid_path = root / GRID_FILE

    def open(self, manifest: dict[str, Any], fingerprint: str) -> None:
        import gzip

        for path in (self.llm_path, self.grid_path):  # building on a published grid: unpack it to append
            packed = path.with_name(path.name + ".gz")
            if packed.exists() and not path.exists():
                path.write_bytes(gzip.decompress(packed.read_bytes()))
                packed.unlink()
        RunStore(self.root).open(manifest, fingerprint)

    def _jsonl(self, path: Path) -> RunStore:
        store = RunStore(self.root)
        store.samples_path = path  # reuse its append and torn-line repair
        return store

    def read(self, path: Path) -> list[dict[str, Any]]:
        packed = path.with_name(path.name + ".gz")  # a published grid (``export_grid``): read-only
        if path.exists():
            self._jsonl(path).load_done()  # repairs a torn last line in place
            text = path.read_text(encoding="utf-8")
        elif packed.exists():
            import gzip

            text = gzip.decompress(packed.read_bytes()).decode("utf-8")
        else:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def append(self, path: Path, records: list[dict[str, Any]]) -> None:
        self._jsonl(path).append(records)

    def write(self, path: Path, records: list[dict[str, Any]]) -> None:
        """Replace ``path`` by ``records``, written as ``append`` writes them, then renamed into place."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        self.append(tmp, records)
        tmp.touch()
        os.replace(tmp, path)

    def llm_answers(self) -> dict[str, dict[str, Any]]:
        return {r["query_id"]: r for r in self.read(self.llm_path)}

    def rows(self) -> list[dict[str, Any]]:
        return self.read(self.grid_path)

    def sha256(self) -> str:
        """The sha256 of the grid's rows file as stored (``grid.jsonl``, or a published ``grid.jsonl.gz``,
        which must still match the digest its manifest recorded at publication)."""
        import hashlib

        packed = self.grid_path.with_name(GRID_FILE + ".gz")
        path = self.grid_path if self.grid_path.exists() else packed
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if path == packed and self.manifest_path.exists():
            want = (json.loads(self.manifest_path.read_text()).get("published") or {}).get("files", {}).get(packed.name)
            if want and want != digest:
                raise GridError(f"{packed}: sha256 {digest[:12]}... differs from the {want[:12]}... its manifest "
                                f"recorded when it was published; the file was changed after publication "
                                f"(republish it with `shepherd-bench publish-grid`)")
        return digest


# --- hints and rows -----------------------------------------------------------------------------------

def hint_size(level: float, kind: LevelKind, n_full: int) -> int:
    """Hint tokens of a level: ``round(level * N)`` for fractions (half up), the count for tokens; <= N."""
    k = math.floor(level * n_full + 0.5) if kind == "fraction" else int(level)
    return min(max(k, 0), n_full)


def is_full(level: float, k: int, n_full: int) -> bool:
    """The hint covers the whole LLM answer: the LLM's own answer is graded, no SLM call."""
    return level > 0 and k >= n_full


def hint_text(llm: dict[str, Any], k: int) -> str:
    return "".join(llm["tokens"][:k])


def query_levels(spec: GridSpec, llm: dict[str, Any]) -> list[float]:
    """Levels stored for one query; a token grid whose levels all stop short of the answer gets one
    more level, the full answer, at ``level = N``."""
    levels = list(spec.all_levels())
    n = int(llm["output_tokens"])
    if spec.kind == "tokens" and (not levels or max(levels) < n or n == 0) and float(n) not in levels:
        levels.append(float(n))
    return levels


def llm_record(q: Query, prompt: str, res: GenResult) -> dict[str, Any]:
    if res.tokens is None:
        raise GridError(
            "the LLM backend returned no output token texts (GenResult.tokens); the grid cuts hints at "
            "token boundaries and needs them: use a backend that reports tokens with logprobs=True "
            "(llamacpp, vllm, or an OpenAI-compatible server that returns logprobs)")
    return {
        "query_id": q.id, "prompt": prompt, "answer_prefix": q.answer_prefix, "prefix_mode": res.prefix_mode,
        "text": res.text, "tokens": list(res.tokens),
        "token_ids": res.token_ids, "input_tokens": res.input_tokens,
        "cached_input_tokens": res.cached_input_tokens, "output_tokens": len(res.tokens),
        "reported_output_tokens": res.output_tokens, "finish_reason": res.finish_reason,
        "latency_s": round(res.latency_s, 4), "tokens_join_to_text": "".join(res.tokens) == res.text,
    }


def _base_row(qid: str, level: float, k: int, full: bool, llm: dict[str, Any]) -> dict[str, Any]:
    """The fields every row has; ``hint_text`` is exactly the paid text the SLM continued from (the
    whole LLM answer on a full row)."""
    return {"query_id": qid, "level": float(level), "hint_tokens": int(k), "full": bool(full),
            "hint_text": llm["text"] if full else hint_text(llm, k),
            "llm_input_tokens": int(llm["input_tokens"]), "llm_output_tokens": int(llm["output_tokens"])}


def _score_fields(score: Score | None, error: str | None) -> dict[str, Any]:
    if error is not None or score is None:
        return {"correct": None, "status": "error", "detail": error or "not graded", "extracted": None}
    return {"correct": bool(score.correct), "status": score.status, "detail": score.detail[:500],
            "extracted": score.extracted}


def full_row(qid: str, level: float, llm: dict[str, Any], score: Score) -> dict[str, Any]:
    row = _base_row(qid, level, int(llm["output_tokens"]), True, llm)
    row.update(sample=0, seed=None, slm_input_tokens=0, slm_output_tokens=0, slm_cached_input_tokens=0,
               slm_mean_logprob=None, slm_finish_reason="", slm_latency_s=0.0, text=llm["text"], error=None)
    row.update(_score_fields(score, None))
    return row


def mean_logprob(logprobs: list[float] | None) -> float | None:
    """A sample's mean token log-probability (None without log-probabilities)."""
    return (sum(logprobs) / len(logprobs)) if logprobs else None


def slm_row(qid: str, level: float, k: int, llm: dict[str, Any], sample: int, seed: int,
            res: GenResult, score: Score | None) -> dict[str, Any]:
    row = _base_row(qid, level, k, False, llm)
    row.update(sample=sample, seed=seed, slm_input_tokens=res.input_tokens,
               slm_output_tokens=res.output_tokens, slm_cached_input_tokens=res.cached_input_tokens,
               slm_mean_logprob=mean_logprob(res.token_logprobs), slm_finish_reason=res.finish_reason,
               slm_latency_s=round(res.latency_s, 4), text=res.text, error=res.error)
    row.update(_score_fields(score, res.error))
    return row


def slm_request(q: Query, hint: str, k: int, spec: GridSpec, sample: int, *, logprobs: bool = False) -> GenRequest:
    """The SLM continuation request, as the live shepherd strategy (``prefill`` mode) builds it: the
    query's known answer prefix and the hint as assistant prefix, and the rest of the task's token budget
    (``max_tokens - k``, at least 1)."""
    budget = q.max_tokens if k == 0 else max(1, q.max_tokens - k)
    return q.request(prefix=hint, max_tokens=budget, temperature=spec.sampling_temperature,
                     seed=spec.sample_seed(sample), logprobs=logprobs)


# --- building -----------------------------------------------------------------------------------------

@dataclass
class GridStats:
    queries: int = 0
    llm_calls: int = 0  # batched generate calls to the LLM
    slm_calls: int = 0  # batched generate calls to the SLM (one per level per chunk)
    slm_requests: int = 0
    rows_written: int = 0
    cached_requests: int = 0  # prompts (LLM and SLM) answered by the generation cache, no model call
    llm_errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


Done = dict[tuple[str, float], list[dict[str, Any]]]  # stored rows by (query, level), complete groups only


@dataclass
class _Chunk:
    """Working state of one chunk of queries."""

    docs: list[Doc]
    queries: dict[str, Query]
    llm: dict[str, dict[str, Any]]
    done: Done
    full_scores: dict[str, Score] = field(default_factory=dict)


def build_grid(task: Task, docs: list[Doc], models: ModelPair, spec: GridSpec, store: GridStore, *,
               batch_size: int = 64, workers: int | None = None, progress: bool = False) -> GridStats:
    """Measure ``docs`` on the grid into ``store`` (already opened); resumes what is stored."""
    t0 = time.perf_counter()
    stats = GridStats(queries=len(docs))
    llm_all = store.llm_answers()
    done = _done_groups(store.rows(), spec.samples)
    step = batch_size if batch_size > 0 else max(len(docs), 1)
    for start in range(0, len(docs), step):
        part = docs[start : start + step]
        chunk = _Chunk(part, {d.id: task.query(d) for d in part}, llm_all, done)
        _ensure_llm(task, chunk, models, store, stats, progress)
        for level in spec.all_levels() if spec.kind == "fraction" else _token_levels(spec, chunk):
            _run_level(task, chunk, level, models, spec, store, stats, workers, progress)
            if progress:
                print(f"grid: queries {start + 1}-{start + len(part)} level {level:g} done", file=sys.stderr)
    stats.wall_s = time.perf_counter() - t0
    return stats


def _token_levels(spec: GridSpec, chunk: _Chunk) -> list[float]:
    levels: set[float] = set()
    for d in chunk.docs:
        if d.id in chunk.llm:
            levels.update(query_levels(spec, chunk.llm[d.id]))
    return sorted(levels)


def _done_groups(rows: Iterable[dict[str, Any]], samples: int) -> Done:
    groups: dict[tuple[str, float], dict[int, dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["query_id"], float(r["level"])), {})[int(r["sample"])] = r
    out = {}
    for key, by_sample in groups.items():
        full = any(r["full"] for r in by_sample.values())
        if full or len(by_sample) >= samples:
            out[key] = list(by_sample.values())
    return out


def _ensure_llm(task: Task, chunk: _Chunk, models: ModelPair, store: GridStore, stats: GridStats,
                progress: bool = False) -> None:
    missing = [d for d in chunk.docs if d.id not in chunk.llm]
    if not missing:
        return
    reqs = [chunk.queries[d.id].request(logprobs=True) for d in missing]
    results = models.large.generate(reqs, progress=progress)
    stats.llm_calls += 1
    stats.cached_requests += sum(r.cached for r in results)
    fresh = []
    for d, res in zip(missing, results, strict=True):
        if not res.ok:
            stats.llm_errors.append(f"{d.id}: {res.error}")
            continue  # not stored: a rerun retries it
        fresh.append(llm_record(chunk.queries[d.id], d.prompt, res))
    store.append(store.llm_path, fresh)
    chunk.llm.update({r["query_id"]: r for r in fresh})


def _stopped(done: Done, qid: str, level: float, spec: GridSpec) -> bool:
    """Early stop: an earlier level of this query succeeded for every sample."""
    if not spec.early_stop:
        return False
    for (q, lv), rows in done.items():
        if q == qid and lv < level and rows and all(r["correct"] for r in rows):
            return True
    return False


def _todo(qid: str, level: float, llm: dict[str, Any] | None, done: Done, spec: GridSpec) -> int | None:
    """The hint size still to measure at ``(qid, level)``; None when there is nothing to do there (no
    LLM answer yet, a level the query does not have, already stored, or early-stopped)."""
    if llm is None or (qid, level) in done or level not in query_levels(spec, llm):
        return None
    if _stopped(done, qid, level, spec):
        return None
    return hint_size(level, spec.kind, int(llm["output_tokens"]))


def _run_level(task: Task, chunk: _Chunk, level: float, models: ModelPair, spec: GridSpec,
               store: GridStore, stats: GridStats, workers: int | None, progress: bool = False) -> None:
    full_todo: list[Doc] = []
    slm_todo: list[tuple[Doc, int, int]] = []  # (doc, k, sample)
    for d in chunk.docs:
        llm = chunk.llm.get(d.id)
        k = _todo(d.id, level, llm, chunk.done, spec)
        if llm is None or k is None:
            continue
        if is_full(level, k, int(llm["output_tokens"])):
            full_todo.append(d)
        else:
            slm_todo.extend((d, k, s) for s in range(spec.samples))
    rows = _full_rows(task, chunk, level, full_todo, workers)
    rows += _slm_rows(task, chunk, level, slm_todo, models, spec, stats, workers, progress)
    store.append(store.grid_path, rows)
    stats.rows_written += len(rows)
    for r in rows:
        chunk.done.setdefault((r["query_id"], level), []).append(r)


def _full_rows(task: Task, chunk: _Chunk, level: float, docs: list[Doc], workers: int | None) -> list[dict[str, Any]]:
    ungraded = [d for d in docs if d.id not in chunk.full_scores]
    if ungraded:
        answers = [chunk.queries[d.id].complete(chunk.llm[d.id]["text"]) for d in ungraded]
        scores = task.score(ungraded, answers, workers=workers)
        chunk.full_scores.update({d.id: s for d, s in zip(ungraded, scores, strict=True)})
    return [full_row(d.id, level, chunk.llm[d.id], chunk.full_scores[d.id]) for d in docs]


def _slm_rows(task: Task, chunk: _Chunk, level: float, todo: list[tuple[Doc, int, int]], models: ModelPair,
              spec: GridSpec, stats: GridStats, workers: int | None, progress: bool = False) -> list[dict[str, Any]]:
    if not todo:
        return []
    hints = [hint_text(chunk.llm[d.id], k) for d, k, _ in todo]
    reqs = [slm_request(chunk.queries[d.id], h, k, spec, s, logprobs=level == 0)
            for (d, k, s), h in zip(todo, hints, strict=True)]
    results = models.small.generate(reqs, progress=progress)  # ONE batched call per level
    stats.slm_calls += 1
    stats.slm_requests += len(reqs)
    stats.cached_requests += sum(r.cached for r in results)
    ok = [i for i, r in enumerate(results) if r.ok]
    answers = [chunk.queries[todo[i][0].id].complete(hints[i] + results[i].text) for i in ok]
    scores = task.score([todo[i][0] for i in ok], answers, workers=workers)
    by_i: dict[int, Score] = dict(zip(ok, scores, strict=True))
    return [slm_row(d.id, level, k, chunk.llm[d.id], s, spec.sample_seed(s), results[i], by_i.get(i))
            for i, (d, k, s) in enumerate(todo)]


# --- reading ------------------------------------------------------------------------------------------

def grid_dir(path: Path) -> Path:
    p = Path(path)
    root = p.parent if p.is_file() else p
    if not (root / GRID_FILE).exists() and not (root / (GRID_FILE + ".gz")).exists():
        raise GridError(f"no {GRID_FILE} in {root}; build one with `shepherd-bench grid --task T --out {root}`")
    return root


def latest_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (query, level, sample): an interrupted level's duplicates, the last one wins."""
    last: dict[tuple[str, float, int], dict[str, Any]] = {}
    for r in rows:
        last[(str(r["query_id"]), float(r["level"]), int(r["sample"]))] = r
    return list(last.values())


def grid_command(manifest: dict[str, Any]) -> str:
    """The ``shepherd-bench grid`` command a grid's manifest records (what was measured, not where)."""
    cfg = manifest.get("config") or {}
    spec = cfg.get("spec") or {}
    levels = ",".join(f"{x:g}" for x in spec.get("levels") or [])
    parts = ["shepherd-bench grid", f"--task {cfg.get('task', '?')}"]
    if cfg.get("subset") is not None:
        parts.append(f"--subset {cfg['subset']} --seed {manifest.get('seed', 0)}")
    if manifest.get("limit") is not None:
        parts.append(f"--limit {manifest['limit']}")
    parts.append(f"--{'tokens' if spec.get('kind') == 'tokens' else 'levels'} {levels}")
    if int(spec.get("samples", 1)) > 1:
        parts.append(f"--samples {spec['samples']} --temperature {spec.get('temperature'):g}")
    if spec.get("early_stop"):
        parts.append("--early-stop")
    for role in ("slm", "llm"):
        model = cfg.get(role) or {}
        options = {**(model.get("options") or {}), **((manifest.get(role) or {}).get("engine_options") or {})}
        parts.append(f"--{role} {model.get('spec', '?')}")
        parts += [f"--{role}-opt {k}={v}" for k, v in sorted(options.items())]
    return " ".join(parts)


def load_manifest(path: Path) -> dict[str, Any]:
    m = grid_dir(path) / "manifest.json"
    return json.loads(m.read_text()) if m.exists() else {}


def load_grid(path: Path) -> pd.DataFrame:
    """One row per query x level x sample (duplicates from an interrupted level: the last one wins)."""
    import pandas as pd

    root = grid_dir(path)
    rows = GridStore(root).rows()
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.drop_duplicates(subset=["query_id", "level", "sample"], keep="last").reset_index(drop=True)
    df["correct"] = df["correct"].astype("float64")  # NaN = error
    # why the graded answer ended: the SLM continuation's, or the LLM answer's on a full row
    llm_finish = {q: str(r.get("finish_reason") or "") for q, r in GridStore(root).llm_answers().items()}
    slm_finish = df["slm_finish_reason"].fillna("").astype(str) if "slm_finish_reason" in df else ""
    df["answer_finish_reason"] = df["query_id"].map(lambda q: llm_finish.get(q, "")).where(df["full"].astype(bool), slm_finish)
    return df


def load_llm_answers(path: Path) -> dict[str, dict[str, Any]]:
    """The LLM answer per query; a published grid stores no prompt text (benchmark data is never copied),
    so the prompts come back from the task's own data (``$SHEPHERD_BENCH_DATA`` or the public copy),
    checked against the dataset sha256 the grid recorded."""
    root = grid_dir(path)
    answers = GridStore(root).llm_answers()
    if answers and any("prompt" not in r for r in answers.values()):
        prompts = task_prompts(load_manifest(root), root)
        for qid, r in answers.items():
            r.setdefault("prompt", prompts.get(qid, ""))
    return answers


def task_prompts(manifest: dict[str, Any], root: Path) -> dict[str, str]:
    from ..tasks import get_task

    cfg = manifest.get("config", {})
    task = get_task(str(cfg.get("task") or manifest.get("task")), **(cfg.get("task_options") or {}))
    dataset = task.load(None)
    want = (manifest.get("dataset") or {}).get("sha256")
    if want and dataset.sha256 != want:
        raise GridError(f"{root}: the grid was built on data with sha256 {want[:12]}..., but the {task.name} data "
                        f"found here ({dataset.source}) has {dataset.sha256[:12]}...; point $SHEPHERD_BENCH_DATA "
                        f"at the same copy to read its prompts")
    return {d.id: d.prompt for d in dataset.docs}


# Fields a published grid leaves out: prompt text is the benchmark's own data; the answer prefix of a code
# query is the prompt too (both come back from the task, see load_llm_answers); host paths are local.
PUBLISHED_DROP = ("prompt", "answer_prefix")
GRID_SCHEMA = "shepherd-bench hint grid v1"


def export_grid(src: Path, dest: Path) -> list[Path]:
    """Publish the grid at ``src`` under ``dest`` as data: ``manifest.json`` (with the schema, the protocol
    and each file's sha256), ``llm.jsonl.gz`` (per query the LLM answer, its tokens and usage, no prompt
    text) and ``grid.jsonl.gz`` (per query, level and sample: hint text, SLM continuation, grade, tokens,
    log-prob summary). Byte-reproducible (gzip without a timestamp); readable with
    ``pandas.read_json(path, lines=True)`` or ``datasets.load_dataset("json", data_files=path)``."""
    import gzip
    import hashlib

    from ..store import write_json_atomic

    root = grid_dir(src)
    store = GridStore(root)
    dest.mkdir(parents=True, exist_ok=True)
    llm = [{k: v for k, v in r.items() if k not in PUBLISHED_DROP} for r in store.llm_answers().values()]
    rows = latest_rows(store.rows())
    files = {LLM_FILE + ".gz": llm, GRID_FILE + ".gz": rows}
    digests = {}
    for name, records in files.items():
        text = "".join(json.dumps(_plain(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records)
        data = gzip.compress(text.encode("utf-8"), mtime=0)
        (dest / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    manifest = {k: v for k, v in load_manifest(root).items() if k not in ("argv", "host")}
    manifest["published"] = {"schema": GRID_SCHEMA, "protocol": manifest.get("config", {}).get("protocol"),
                             "files": digests, "queries": len(llm), "rows": len(rows),
                             "dropped_fields": list(PUBLISHED_DROP)}
    write_json_atomic(dest / "manifest.json", manifest)
    return [dest / "manifest.json", *(dest / n for n in files)]


def _plain(r: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready values (NaN as null)."""
    return {k: None if isinstance(v, float) and v != v else v for k, v in r.items()}


# --- shards -------------------------------------------------------------------------------------------
# A grid built in slices (``--shard I/N``, or all N of them with ``--shards N``, on Ray with ``--ray``):
# slice I holds the queries whose position in the selection is I mod N, in a grid folder of its own,
# ``<out>/shards/I-of-N/``; ``merge_shards`` writes the grid the one-process command writes, row for row.

SHARDS_DIR = "shards"
SHARD_RULE = "query position in the selection mod count"


@dataclass(frozen=True)
class Shard:
    """Slice ``index`` of ``count``: every ``count``-th query of the selection (after --subset and
    --limit), starting at ``index``. A query keeps its slice when --limit grows."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise GridError(f"slice {self.index}/{self.count}: want I/N with 0 <= I < N, e.g. --shard 0/4")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        try:
            if sep:
                return cls(int(index), int(count))
        except ValueError:
            pass
        raise GridError(f"--shard {text!r}: want I/N, slice I of N (e.g. --shard 0/4 ... --shard 3/4)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: list[Any]) -> list[Any]:
        return items[self.index :: self.count]

    def position(self, local: int) -> int:
        """Position in the whole selection of this slice's ``local``-th query."""
        return local * self.count + self.index

    def folder(self, root: Path) -> Path:
        return root / SHARDS_DIR / f"{self.index}-of-{self.count}"


def shard_manifest(manifest: dict[str, Any], shard: Shard, query_ids: list[str]) -> dict[str, Any]:
    """A slice's manifest: the grid's, for the slice's queries, with the slice and its query ids."""
    mine = shard.take(query_ids)
    return {**manifest, "n_queries": len(mine),
            "shard": {"index": shard.index, "count": shard.count, "rule": SHARD_RULE,
                      "of_queries": len(query_ids), "query_ids": mine, "finished": False}}


def mark_shard_finished(store: GridStore) -> None:
    """The slice's build ran to its end (queries whose LLM call failed are skipped, as in one process)."""
    from ..store import write_json_atomic

    manifest = json.loads(store.manifest_path.read_text())
    manifest["shard"]["finished"] = True
    write_json_atomic(store.manifest_path, manifest)


def pending_cells(spec: GridSpec, query_ids: list[str], store: GridStore) -> list[str]:
    """The (query, level) cells a build of ``query_ids`` would still measure in ``store`` (queries
    without an LLM answer are not counted: a build skips those whose LLM call failed)."""
    llm = store.llm_answers()
    by_query: dict[str, Done] = {}
    for (q, lv), rows in _done_groups(store.rows(), spec.samples).items():
        by_query.setdefault(q, {})[(q, lv)] = rows
    return [f"{q} level {lv:g}" for q in query_ids if q in llm for lv in query_levels(spec, llm[q])
            if _todo(q, lv, llm[q], by_query.get(q, {}), spec) is not None]


def row_order(position: int, row: dict[str, Any], step: int) -> tuple[int, float, bool, int, int]:
    """Where ``build_grid`` writes a row: by chunk of ``step`` queries, level, LLM-answer rows before
    SLM rows, query position, sample."""
    return position // step, float(row["level"]), not row["full"], position, int(row["sample"])


@dataclass
class MergeStats:
    root: Path
    shards: int
    queries: int
    rows: int
    skipped: list[str] = field(default_factory=list)  # queries without an LLM answer (its call failed)


def merge_shards(root: Path, cfg: GridConfig, count: int | None = None) -> MergeStats:
    """Write the grid of the finished slices under ``root/shards/`` into ``root``: the rows and LLM
    answers in the order the one-process build (same ``batch_size``) writes them, and its manifest
    (``argv`` and ``created`` are the merge's; ``sharded`` says how it was built)."""
    slices = _shard_stores(root, count)
    manifests = [_shard_ready(shard, store, cfg) for shard, store in slices]
    totals = {int(m["shard"]["of_queries"]) for m in manifests}
    if len(totals) > 1:
        raise GridError(f"the slices under {root / SHARDS_DIR} cover different selections ({sorted(totals)} "
                        f"queries): build every slice with the same --limit / --subset, then merge")
    sizes = {int(m["batch_size"]) for m in manifests if "batch_size" in m}
    if sizes and sizes != {cfg.batch_size}:
        raise GridError(f"the slices under {root / SHARDS_DIR} were built with --batch-size "
                        f"{', '.join(map(str, sorted(sizes)))}; merge with the same --batch-size (it sets the "
                        f"row order of the one-process grid and what each SLM batch held)")
    step = cfg.batch_size if cfg.batch_size > 0 else max(totals.pop(), 1)
    answers: list[tuple[int, dict[str, Any]]] = []
    rows: list[tuple[tuple[int, float, bool, int, int], dict[str, Any]]] = []
    skipped: list[str] = []
    for (shard, store), manifest in zip(slices, manifests, strict=True):
        position = {q: shard.position(i) for i, q in enumerate(manifest["shard"]["query_ids"])}
        llm = store.llm_answers()
        answers += [(p, llm[q]) for q, p in position.items() if q in llm]
        skipped += [q for q in position if q not in llm]
        rows += [(row_order(position[r["query_id"]], r, step), r) for r in latest_rows(store.rows())
                 if r["query_id"] in position]
    _check_merge_target(root, cfg.fingerprint())
    out = GridStore(root)
    out.write(out.llm_path, [r for _, r in sorted(answers, key=lambda x: x[0])])
    out.write(out.grid_path, [r for _, r in sorted(rows, key=lambda x: x[0])])
    from ..store import write_json_atomic

    write_json_atomic(out.manifest_path, merged_manifest(manifests))
    return MergeStats(root, len(slices), len(answers), len(rows), sorted(skipped))


def merged_manifest(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The one-process grid's manifest from its slices' (identities must agree where recorded)."""
    from datetime import datetime, timezone

    from ..runner import _redacted_argv

    merged = {k: v for k, v in manifests[0].items() if k not in ("shard", "resumed")}
    merged["n_queries"] = int(manifests[0]["shard"]["of_queries"])
    for role in ("slm", "llm"):
        found = {json.dumps(m[role]["identity"], sort_keys=True) for m in manifests if "identity" in m[role]}
        if len(found) > 1:
            raise GridError(f"the slices were built with different {role.upper()} models or weights "
                            f"(manifest.json -> {role}.identity differs); rebuild them with the same model")
        if found:
            merged[role] = {**merged[role], "identity": json.loads(found.pop())}
        else:
            merged[role] = {k: v for k, v in merged[role].items() if k != "identity"}
    merged.update(argv=_redacted_argv(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  sharded={"count": len(manifests), "rule": SHARD_RULE})
    return merged


def _shard_stores(root: Path, count: int | None) -> list[tuple[Shard, GridStore]]:
    base = root / SHARDS_DIR
    found: dict[int, set[int]] = {}
    for p in sorted(base.glob("*-of-*")) if base.is_dir() else []:
        index, _, n = p.name.partition("-of-")
        if index.isdigit() and n.isdigit() and (p / "manifest.json").exists():
            found.setdefault(int(n), set()).add(int(index))
    if count is None:
        if len(found) != 1:
            raise GridError(f"{base}: " + (f"slices of {sorted(found)} shards; merge one with --shards N"
                                           if found else "no slices; build them with --shard I/N first"))
        count = next(iter(found))
    missing = sorted(set(range(count)) - found.get(count, set()))
    if missing:
        raise GridError(f"{base}: slice(s) {', '.join(f'{i}/{count}' for i in missing)} not built yet; run the "
                        f"same command with --shard {missing[0]}/{count}, then merge")
    return [(s, GridStore(s.folder(root))) for s in (Shard(i, count) for i in range(count))]


def _shard_ready(shard: Shard, store: GridStore, cfg: GridConfig) -> dict[str, Any]:
    """The slice's manifest, once it is known to be this grid's and finished."""
    manifest: dict[str, Any] = json.loads(store.manifest_path.read_text())
    if manifest.get("fingerprint") != cfg.fingerprint():
        raise GridError(f"{store.root} was built with another configuration (fingerprint "
                        f"{manifest.get('fingerprint')} != {cfg.fingerprint()}); merge with the command that "
                        f"built the slices")
    info = manifest.get("shard") or {}
    todo = pending_cells(cfg.spec, list(info.get("query_ids", [])), store)
    if not info.get("finished") or todo:
        left = f" ({len(todo)} cells left, e.g. {todo[0]})" if todo else ""
        raise GridError(f"slice {shard} is not finished{left}; rerun the same command with --shard {shard} "
                        f"to resume it, then merge")
    return manifest


def _check_merge_target(root: Path, fingerprint: str) -> None:
    """The merged grid goes to ``root``: refuse a grid of another configuration or one built there in
    one process (a merge replaces ``llm.jsonl`` and ``grid.jsonl``)."""
    path = root / "manifest.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    if old.get("fingerprint") != fingerprint:
        raise GridError(f"{root} holds a grid with another configuration (fingerprint {old.get('fingerprint')} "
                        f"!= {fingerprint}); pass another --out")
    if "sharded" not in old and (GridStore(root).grid_path.exists() or GridStore(root).llm_path.exists()):
        raise GridError(f"{root} holds a grid built in one process; a merge would replace it: pass another --out")


def build_shard(cfg: GridConfig, out: Path | None, shard: Shard, cache_path: Path | None = None,
                use_cache: bool = True, progress: bool = False) -> GridStats:
    """Build (or resume) one slice; the function each Ray task runs."""
    return execute_grid(cfg, out=out, shard=shard, cache_path=cache_path, use_cache=use_cache,
                        progress=progress)[1]


def build_shards(cfg: GridConfig, out: Path | None, count: int, *, ray: RayOptions | None = None,
                 cache_path: Path | None = None, use_cache: bool = True,
                 progress: bool = True) -> list[GridStats]:
    """Every slice of ``count``: as Ray tasks (``ray``), else one after another in this process."""
    calls = [(cfg, out, Shard(i, count), cache_path, use_cache) for i in range(count)]
    if ray is None:
        return [build_shard(*c, progress=progress) for c in calls]
    from .ray_pool import run_on_ray

    def done(i: int, stats: GridStats) -> None:
        print(f"grid: slice {Shard(i, count)} done ({stats.rows_written} rows written, {stats.wall_s:.1f}s)",
              file=sys.stderr)

    return run_on_ray(build_shard, calls, ray, on_done=done if progress else None)


# --- the command --------------------------------------------------------------------------------------

def select_docs(docs: list[Doc], limit: int | None, subset: int | None, seed: int) -> list[Doc]:
    """``subset``: a seeded random subset (in dataset order); then ``limit``: its first N."""
    if subset is not None and subset < len(docs):
        import random

        keep = sorted(random.Random(seed).sample(range(len(docs)), subset))
        docs = [docs[i] for i in keep]
    return docs[:limit] if limit else docs


def engine_options(m: ModelConfig) -> dict[str, Any]:
    """A model's options that ``GridConfig.measured`` leaves out (they change no row, e.g. a larger
    llama.cpp slot), recorded so that the grid's command can be rerun as it was."""
    secret = ("key", "secret", "auth", "header", "password")  # never written, whatever the value
    return {k: v for k, v in sorted(m.options.items())
            if k != "base_url" and not any(w in k.lower() for w in secret) and not str(v).startswith("sk-")}


def grid_manifest(cfg: GridConfig, dataset: Any, n_docs: int) -> dict[str, Any]:
    from datetime import datetime, timezone

    from ..runner import _redacted_argv, package_versions

    return {
        "kind": "hint-grid",
        "protocol": PROTOCOL_VERSION,
        "config": cfg.measured(),
        "fingerprint": cfg.fingerprint(),
        "task": cfg.task,
        "spec": asdict(cfg.spec),
        "seed": cfg.spec.seed,
        "limit": cfg.limit,
        "batch_size": cfg.batch_size,  # queries per chunk: the row order, and what each SLM batch held
        "n_queries": n_docs,
        "dataset": {"source": dataset.source, "sha256": dataset.sha256, "n_total": len(dataset.docs)},
        # engine options that do not change a row (slot size, threads...): the grid command needs them
        "slm": {"spec": cfg.slm.spec, "price": cfg.slm.price, "engine_options": engine_options(cfg.slm)},
        "llm": {"spec": cfg.llm.spec, "price": cfg.llm.price, "engine_options": engine_options(cfg.llm)},
        "cost_model": "LLM level k priced as llm_input_tokens * p_in + hint_tokens * p_out (k = 0: free)",
        "early_stop_note": ("early-stopped grid: levels after the first all-correct one are missing; "
                            "use it for predictor labels, not fixed-level curves") if cfg.spec.early_stop else "",
        "versions": package_versions(),
        "argv": _redacted_argv(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def execute_grid(cfg: GridConfig, *, out: Path | None = None, shard: Shard | None = None,
                 cache_path: Path | None = None, use_cache: bool = True,
                 progress: bool = True) -> tuple[Path, GridStats]:
    """Build (or resume) the grid in ``out``; with ``shard``, only that slice, in its own folder under
    ``out/shards/``."""
    from ..backends.cache import GenerationCache, default_cache_path
    from ..runner import _record_identities, build_models
    from ..tasks import get_task

    task = get_task(cfg.task)
    dataset = task.load(Path(cfg.data_dir) if cfg.data_dir else None)
    docs = select_docs(dataset.docs, cfg.limit, cfg.subset, cfg.spec.seed)
    manifest = grid_manifest(cfg, dataset, len(docs))
    store = GridStore(out or cfg.default_dir())
    if shard is not None:
        manifest = shard_manifest(manifest, shard, [d.id for d in docs])
        docs, store = shard.take(docs), GridStore(shard.folder(store.root))
    store.open(manifest, cfg.fingerprint())
    cache = GenerationCache(cache_path or default_cache_path()) if use_cache else None
    models = build_models(cfg.run_config(), cache)
    try:
        stats = build_grid(task, docs, models, cfg.spec, store, batch_size=cfg.batch_size,
                           workers=cfg.workers, progress=progress)
        _record_identities(RunStore(store.root), manifest, models)  # type: ignore[arg-type]
        if shard is not None:
            mark_shard_finished(store)
    finally:
        if cache is not None:
            cache.close()
        models.small.close()
        models.large.close()
    return store.root, stats


def add_publish_parser(sub: Any) -> argparse.ArgumentParser:
    """``shepherd-bench publish-grid``: a grid folder as published data (``export_grid``)."""
    g = sub.add_parser("publish-grid", help="write a grid as published data (compressed, no prompt text)")
    g.add_argument("--grid", type=Path, required=True, help="grid folder built by `shepherd-bench grid`")
    g.add_argument("--out", type=Path, required=True, help="destination, e.g. leaderboard/grids/<task>")
    return g  # type: ignore[no-any-return]


def cmd_publish_grid(args: argparse.Namespace) -> int:
    for path in export_grid(args.grid, args.out):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


def add_grid_parser(sub: Any) -> argparse.ArgumentParser:
    """``shepherd-bench grid``: hook with ``add_grid_parser(sub)`` and ``COMMANDS["grid"] = cmd_grid``."""
    from ..cli_args import add_data_args, add_model_args

    g = sub.add_parser("grid", help="measure every query on a grid of hint sizes (resumable)")
    g.add_argument("--task", required=True, help="task name (shepherd-bench list tasks)")
    g.add_argument("--levels", help="hint fractions of the LLM answer (default 0,0.1,...,1.0)")
    g.add_argument("--tokens", help="hint sizes in LLM tokens instead, e.g. 0,16,32,64,128")
    g.add_argument("--samples", type=int, default=1, help="SLM samples per level (greedy when 1)")
    g.add_argument("--temperature", type=float, default=0.7, help="SLM temperature when --samples > 1")
    g.add_argument("--early-stop", action="store_true",
                   help="stop a query at the first level where every sample succeeds (cheap predictor "
                   "labels; NOT for fixed-level curves)")
    g.add_argument("--limit", type=int, help="first N queries (after --subset)")
    g.add_argument("--subset", type=int, help="a seeded random subset of N queries")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, help="grid folder (default grids/<task>-...; rerun to resume)")
    g.add_argument("--batch-size", type=int, default=64, help="queries per chunk (one SLM call per level)")
    g.add_argument("--workers", type=int, help="sandbox workers (default: cores)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the generation cache")
    g.add_argument("--cache", type=Path, help="generation cache file (default: user cache dir)")
    add_model_args(g)
    add_data_args(g)
    add_scale_args(g)
    return g  # type: ignore[no-any-return]


def add_scale_args(g: argparse.ArgumentParser) -> None:
    s = g.add_argument_group("scale (docs/SCALE.md)")
    s.add_argument("--shard", metavar="I/N", help="build only slice I of N: the queries whose position in the "
                   "selection is I mod N, into <out>/shards/I-of-N/ (rerun to resume); then --merge")
    s.add_argument("--shards", type=int, metavar="N", help="build all N slices (Ray tasks with --ray, else one "
                   "after another here), then merge them into <out>")
    s.add_argument("--merge", action="store_true", help="merge the finished slices under <out>/shards/ into "
                   "<out>: the rows the one-process command (same --batch-size) writes, in its order")
    s.add_argument("--ray", action="store_true", help="run the --shards N slices as Ray tasks, each with its "
                   "own SLM engine and LLM client (pip install 'shepherd-bench[ray]')")
    s.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join, e.g. auto or ray://head:10001 "
                   "(default: $RAY_ADDRESS, else start a local cluster)")
    s.add_argument("--ray-cpus", type=float, help="CPUs Ray reserves per slice (default 1; give "
                   "llama.cpp as many threads: --slm-opt n_threads=...)")
    s.add_argument("--ray-gpus", type=float, help="GPUs Ray reserves per slice (default 0; 1 for a "
                   "vLLM SLM per GPU, T with --slm-opt tensor_parallel_size=T)")


def scale_plan(args: argparse.Namespace) -> tuple[Shard | None, RayOptions | None]:
    """The slice to build and the Ray options, once the scale flags are known to fit together."""
    if args.shard and (args.shards or args.merge):
        raise GridError("--shard I/N builds one slice; --shards N builds them all (then merges): give one")
    if args.shards is not None and args.shards < 1:
        raise GridError("--shards must be a positive number of slices")
    if args.ray and not args.shards:
        raise GridError("--ray runs the slices of --shards N as Ray tasks: add --shards N")
    given = {k: v for k, v in (("num_cpus", args.ray_cpus), ("num_gpus", args.ray_gpus)) if v is not None}
    if (args.ray_address or given) and not args.ray:
        raise GridError("--ray-address / --ray-cpus / --ray-gpus go with --ray --shards N")
    ray = RayOptions(address=args.ray_address, **given) if args.ray else None
    return (Shard.parse(args.shard) if args.shard else None), ray


def grid_config(args: argparse.Namespace) -> GridConfig:
    from ..cli_args import model_config

    for flag in ("limit", "subset"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise GridError(f"--{flag} must be a positive number of queries")
    levels, kind = parse_levels(args.levels, args.tokens)
    spec = GridSpec(levels=levels, kind=kind, samples=args.samples, temperature=args.temperature,
                    early_stop=args.early_stop, seed=args.seed)
    return GridConfig(task=args.task, slm=model_config(args.slm, args.slm_price, args.slm_opt, "small"),
                      llm=model_config(args.llm, args.llm_price, args.llm_opt, "large"), spec=spec,
                      limit=args.limit, subset=args.subset,
                      data_dir=str(args.data_dir) if args.data_dir else None,
                      batch_size=args.batch_size, workers=args.workers)


def cmd_grid(args: argparse.Namespace) -> int:
    shard, ray = scale_plan(args)
    cfg = grid_config(args)
    out = args.out or cfg.default_dir()
    if args.shards or args.merge:
        if args.shards:
            for i, stats in enumerate(build_shards(cfg, out, args.shards, ray=ray, cache_path=args.cache,
                                                   use_cache=not args.no_cache)):
                _print_stats(Shard(i, args.shards).folder(out), cfg.spec, stats)
        merged = merge_shards(out, cfg, args.shards)
        print(f"merged       {merged.shards} slices: {merged.queries} queries, {merged.rows} rows -> {merged.root}")
        if merged.skipped:
            print(f"LLM errors   {len(merged.skipped)} queries without an LLM answer (rerun to retry): "
                  f"{merged.skipped[:3]}")
        print(f"next         shepherd-bench replay --grid {merged.root}")
        return 0
    root, stats = execute_grid(cfg, out=out, shard=shard, cache_path=args.cache, use_cache=not args.no_cache)
    _print_stats(root, cfg.spec, stats)
    if shard is not None:
        print(f"next         the other slices (--shard I/{shard.count}), then the same command with --merge "
              f"instead of --shard")
    else:
        print(f"next         shepherd-bench replay --grid {root}")
    return 0


def _print_stats(root: Path, spec: GridSpec, stats: GridStats) -> None:
    print(f"grid folder  {root}")
    print(f"queries      {stats.queries}  levels {', '.join(f'{x:g}' for x in spec.all_levels())} "
          f"({spec.kind})  samples {spec.samples}{'  early-stop' if spec.early_stop else ''}")
    print(f"calls        LLM {stats.llm_calls} batched; SLM {stats.slm_calls} batched "
          f"({stats.slm_requests} prompts); {stats.cached_requests} prompts from cache; "
          f"rows written {stats.rows_written}; wall {stats.wall_s:.1f}s")
    if stats.llm_errors:
        print(f"LLM errors   {len(stats.llm_errors)} queries skipped (rerun to retry): {stats.llm_errors[:3]}")
