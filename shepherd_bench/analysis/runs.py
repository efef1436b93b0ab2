"""Run folders -> pandas DataFrames (one row per sample, priced at analysis time), paired by query id.

A run folder holds ``manifest.json``, ``samples.jsonl`` and ``summary.json`` (written by the runner).
The cost of a sample is ``prices.calls_cost(calls, large_price, small_price)`` with the price names
recorded in the manifest, so a price change needs no re-run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..backends.meter import CallRecord
from ..prices import PriceTable, calls_cost, load_prices
from ..research.outcomes import SHORT_ANSWER_TOKENS

SAMPLE_COLUMNS = ("query_id", "index", "correct", "error", "status", "cost_usd", "llm_cost_usd",
                  "slm_cost_usd", "llm_input_tokens", "llm_output_tokens", "llm_calls", "score",
                  "answer_tokens", "cut", "no_answer")
CALL_DEFAULTS: dict[str, Any] = {"cached_input_tokens": 0, "latency_s": 0.0, "cached": False}  # compact files
LLM_STRATEGY = "llm"
SLM_STRATEGY = "slm"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {path.parent} a run folder "
                                f"(manifest.json, samples.jsonl, summary.json)?")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_samples(path: Path) -> list[dict[str, Any]]:
    """``samples.jsonl``; a query id seen twice (a resumed run) keeps its last record."""
    by_id: dict[str, dict[str, Any]] = {}
    with path.open() as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                by_id[str(rec["query_id"])] = rec
    return list(by_id.values())


def _identity_name(model: dict[str, Any] | None) -> str:
    if not model:
        return "?"
    ident = model.get("identity")
    if isinstance(ident, dict):
        return str(ident.get("model") or ident.get("name") or ident.get("kind") or "?")
    if ident is not None:
        return str(ident)
    return str(model.get("spec") or model.get("price", "?")).split(":", 1)[-1]


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={params[k]}" for k in sorted(params))


_NO_DEFAULT = object()


def strategy_defaults(name: str) -> dict[str, Any]:
    """Parameter defaults of a registered strategy ({} for one not installed here)."""
    try:
        from ..strategies import get_strategy

        return {p.name: p.default for p in get_strategy(name).params}
    except Exception:  # an unknown or broken plugin: show every parameter
        return {}


def shown_params(strategy: str, params: dict[str, Any], keep: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The parameters worth a label: those off their default, and those in ``keep`` (the ones that vary
    among the runs shown together)."""
    defaults = strategy_defaults(strategy)
    return {k: v for k, v in params.items() if k in keep or defaults.get(k, _NO_DEFAULT) != v}


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    samples: pd.DataFrame = field(repr=False)

    @property
    def task(self) -> str:
        return str(self.manifest.get("task", self.summary.get("task", "?")))

    @property
    def strategy(self) -> str:
        s = self.manifest.get("strategy", {})
        return str(s.get("strategy", "?")) if isinstance(s, dict) else str(s)

    @property
    def kind(self) -> str:
        s = self.manifest.get("strategy", {})
        return str(s.get("kind", "")) if isinstance(s, dict) else ""

    @property
    def params(self) -> dict[str, Any]:
        s = self.manifest.get("strategy", {})
        p = s.get("params", {}) if isinstance(s, dict) else {}
        return dict(p) if isinstance(p, dict) else {}

    @property
    def label(self) -> str:
        p = format_params(shown_params(self.strategy, self.params))
        return f"{self.strategy}({p})" if p else self.strategy

    @property
    def slm(self) -> str:
        return _identity_name(self.manifest.get("slm"))

    @property
    def llm(self) -> str:
        return _identity_name(self.manifest.get("llm"))

    @property
    def date(self) -> str:
        return str(self.manifest.get("created", ""))[:10]

    @property
    def harness_version(self) -> str:
        return str(self.manifest.get("harness_version", "?"))

    @property
    def grid_sha256(self) -> str:
        """The sha256 of the hint grid a replayed run came from ("" for a live run)."""
        source = self.manifest.get("source")
        return str(source.get("grid_sha256") or "") if isinstance(source, dict) else ""

    def sanity(self) -> dict[str, float]:
        """Shares over graded samples (errors left out): answers under ``SHORT_ANSWER_TOKENS`` output
        tokens, answers cut at ``max_tokens`` (NaN when no call recorded a finish reason), answers
        with nothing to grade (no final answer / empty program)."""
        df = self.samples[self.samples["error"].isna()]
        known = df["cut"].dropna()
        return {"n": float(len(df)),
                "short": float((df["answer_tokens"] < SHORT_ANSWER_TOKENS).mean()) if len(df) else np.nan,
                "cut": float(known.mean()) if len(known) else np.nan,
                "no_answer": float(df["no_answer"].mean()) if len(df) else np.nan}

    @property
    def sweep_key(self) -> tuple[str, ...]:
        """Runs sharing this key form one sweep: same task, strategy, models and non-numeric parameters
        (numeric parameters, a threshold or a hint size, are the swept dimension). A manifest may name
        its sweep explicitly in ``strategy.sweep``."""
        s = self.manifest.get("strategy", {})
        explicit = s.get("sweep") if isinstance(s, dict) else None
        fixed = {k: v for k, v in self.params.items()
                 if isinstance(v, bool) or not isinstance(v, (int, float))}
        family = str(explicit) if explicit else format_params(fixed)
        return (self.task, self.strategy, self.slm, self.llm, family)


def answer_shape(calls: Sequence[CallRecord], decision: dict[str, Any]) -> tuple[float, float]:
    """(output tokens of the graded answer, 1.0 if it was cut at ``max_tokens``) for one sample, from
    its last successful call: a continuation counts its hint too. NaN where unknown (no successful
    call; a backend or an older run that recorded no finish reason)."""
    done = [c for c in calls if c.error is None]
    if not done:
        return np.nan, np.nan
    last = done[-1]
    tokens = last.output_tokens
    if last.purpose == "continue":
        tokens += int(decision.get("hint_tokens") or 0)
    cut = np.nan if not last.finish_reason else float(last.finish_reason == "length")
    return float(tokens), cut


def sample_frame(records: Sequence[dict[str, Any]], large: Any, small: Any) -> pd.DataFrame:
    """One row per sample with its cost (USD) and LLM token counts."""
    rows: list[dict[str, Any]] = []
    for r in records:
        calls = [CallRecord.from_json({**CALL_DEFAULTS, **c}) for c in r.get("calls", [])]
        big = [c for c in calls if c.role == "large"]
        correct = r.get("correct")
        decision = r.get("decision") or {}
        score = decision.get("score") if isinstance(decision, dict) else None
        answer_tokens, cut = answer_shape(calls, decision if isinstance(decision, dict) else {})
        rows.append({
            "query_id": str(r["query_id"]),
            "index": int(r.get("index", len(rows))),
            "correct": np.nan if correct is None else float(bool(correct)),
            "error": r.get("error"),
            "status": r.get("status", ""),
            "cost_usd": calls_cost(calls, large, small),
            "llm_cost_usd": calls_cost(big, large, small),
            "slm_cost_usd": calls_cost([c for c in calls if c.role != "large"], large, small),
            "llm_input_tokens": sum(c.input_tokens for c in big),
            "llm_output_tokens": sum(c.output_tokens for c in big),
            "llm_calls": len(big),
            "score": np.nan if score is None else float(score),
            "answer_tokens": answer_tokens,
            "cut": cut,
            "no_answer": float(r.get("status") == "no_answer"),
        })
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def load_run(path: Path, prices: PriceTable | None = None) -> Run:
    """Load one run folder, pricing each sample with the manifest's price names."""
    path = Path(path)
    manifest = _read_json(path / "manifest.json")
    summary = _read_json(path / "summary.json") if (path / "summary.json").exists() else {}
    table = prices or load_prices()
    llm_price = table.get(str((manifest.get("llm") or {}).get("price", "free")))
    slm_price = table.get(str((manifest.get("slm") or {}).get("price", "free")))
    samples_path = path / "samples.jsonl"
    if not samples_path.exists():
        raise FileNotFoundError(f"{samples_path} is missing: was the run interrupted before any sample?")
    df = sample_frame(read_samples(samples_path), llm_price, slm_price)
    return Run(path=path, manifest=manifest, summary=summary, samples=df)


@dataclass
class AlignedRuns:
    """Runs of one task paired on their common query ids (sorted), as arrays ``[n, k]``."""

    runs: list[Run]
    names: list[str]
    query_ids: list[str]
    correct: np.ndarray  # 1/0, NaN = error
    cost: np.ndarray  # USD per query
    llm_input_tokens: np.ndarray
    llm_output_tokens: np.ndarray
    dropped: dict[str, int]  # per run: samples outside the common query ids

    @property
    def note(self) -> str:
        lost = {k: v for k, v in self.dropped.items() if v}
        if not lost:
            return f"All runs share the same {len(self.query_ids)} query ids"
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(lost.items()))
        return (f"Runs cover different queries: paired on the {len(self.query_ids)} common query ids "
                f"(samples left out per run: {parts})")

    def column(self, name: str) -> int:
        return self.names.index(name)


def unique_names(runs: Sequence[Run]) -> list[str]:
    """Run labels, made unique with the folder name where two runs share a label."""
    varying: dict[str, set[str]] = {}
    for r in runs:
        for k in r.params:
            if len({repr(x.params.get(k)) for x in runs if x.strategy == r.strategy}) > 1:
                varying.setdefault(r.strategy, set()).add(k)
    labels = []
    for r in runs:
        p = format_params(shown_params(r.strategy, r.params, varying.get(r.strategy, set())))
        labels.append(f"{r.strategy}({p})" if p else r.strategy)
    return [f"{lab} [{r.path.name}]" if labels.count(lab) > 1 else lab for lab, r in zip(labels, runs, strict=True)]


def align_runs(runs: Sequence[Run]) -> AlignedRuns:
    """Pair runs on the query ids they all have (the paired bootstrap needs the same queries)."""
    if not runs:
        raise ValueError("no runs to align")
    names = unique_names(runs)
    common = set(runs[0].samples["query_id"])
    for r in runs[1:]:
        common &= set(r.samples["query_id"])
    ids = sorted(common)
    if not ids:
        raise ValueError("the runs share no query id; are they runs of the same task?")
    frames = [r.samples.set_index("query_id").loc[ids] for r in runs]

    def stack(col: str) -> np.ndarray:
        return np.column_stack([f[col].to_numpy(dtype=np.float64) for f in frames])

    dropped = {nm: int(len(r.samples) - len(ids)) for nm, r in zip(names, runs, strict=True)}
    return AlignedRuns(runs=list(runs), names=names, query_ids=ids, correct=stack("correct"),
                       cost=stack("cost_usd"), llm_input_tokens=stack("llm_input_tokens"),
                       llm_output_tokens=stack("llm_output_tokens"), dropped=dropped)


def group_by_task(runs: Sequence[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for r in runs:
        out.setdefault(r.task, []).append(r)
    return {k: out[k] for k in sorted(out)}


def find_sweeps(runs: Sequence[Run]) -> dict[tuple[str, ...], list[Run]]:
    """Groups of two or more runs forming one sweep (see :attr:`Run.sweep_key`), excluding the
    SLM-only and LLM-only references."""
    groups: dict[tuple[str, ...], list[Run]] = {}
    for r in runs:
        if r.strategy in (LLM_STRATEGY, SLM_STRATEGY):
            continue
        groups.setdefault(r.sweep_key, []).append(r)
    return {k: v for k, v in sorted(groups.items()) if len(v) >= 2}


def find_reference(runs: Sequence[Run], strategy: str) -> Run | None:
    """The LLM-only (``"llm"``) or SLM-only (``"slm"``) run among ``runs``, if any (first by path)."""
    found = sorted((r for r in runs if r.strategy == strategy), key=lambda r: str(r.path))
    return found[0] if found else None
