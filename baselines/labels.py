"""Per-query correctness labels that train routers and learned deferral scorers.

A labels file is JSONL, one object per query (``shepherd-bench replay --grid G --export-labels FILE``
writes them from a hint grid)::

    {"query_id": "gsm8k/12", "text": "<user turn>", "slm_correct": true, "llm_correct": true,
     "slm_answer": "<the SLM's answer text, for cascade-frugal>", "split": "train"}

``split`` is optional: ``train`` rows fit the model, ``calib`` rows calibrate thresholds, any other value
(``test``, ``eval``) is ignored. Without it, rows are split by a seeded hash of ``query_id``. A model
must never see an evaluation query: ``assert_disjoint`` is checked on every ``solve``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shepherd_bench.errors import UserError


class SplitOverlap(UserError, AssertionError):
    """Evaluation queries found among the rows a router or scorer was fitted or calibrated on."""


@dataclass(frozen=True)
class LabelRow:
    query_id: str
    text: str
    slm_correct: bool
    llm_correct: bool
    slm_answer: str = ""
    split: str = ""


@dataclass(frozen=True)
class Splits:
    train: list[LabelRow]
    calib: list[LabelRow]

    def ids(self) -> frozenset[str]:
        return frozenset(r.query_id for r in self.train + self.calib)


def load_labels(path: str | Path) -> list[LabelRow]:
    p = Path(path)
    if not str(path):
        raise UserError("this strategy needs -S labels=PATH (a JSONL labels file: shepherd-bench replay --grid G --export-labels FILE)")
    if not p.is_file():
        raise UserError(f"labels file {str(p)!r} not found (write one with shepherd-bench replay --grid G --export-labels FILE)")
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            rows.append(_row(json.loads(line), p, n))
    if not rows:
        raise UserError(f"labels file {str(p)!r} is empty")
    return rows


def label_rows(dicts: list[dict[str, object]], where: str = "labels") -> list[LabelRow]:
    """Label rows from already-parsed objects (e.g. built from a hint grid by the replay)."""
    return [_row(d, Path(where), n) for n, d in enumerate(dicts, 1)]


def _row(d: dict[str, object], path: Path, n: int) -> LabelRow:
    missing = [k for k in ("query_id", "text", "slm_correct", "llm_correct") if k not in d]
    if missing:
        raise UserError(f"{path}:{n}: labels row lacks {', '.join(missing)}")
    return LabelRow(str(d["query_id"]), str(d["text"]), bool(d["slm_correct"]), bool(d["llm_correct"]),
                    str(d.get("slm_answer", "") or ""), str(d.get("split", "") or ""))


def _unit(seed: int, key: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, key): stable across batches and resumes."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_rows(rows: list[LabelRow], calib_fraction: float, seed: int) -> Splits:
    if any(r.split for r in rows):
        return Splits([r for r in rows if r.split == "train"], [r for r in rows if r.split == "calib"])
    calib = [r for r in rows if _unit(seed, r.query_id) < calib_fraction]
    train = [r for r in rows if _unit(seed, r.query_id) >= calib_fraction]
    return Splits(train, calib)


def assert_disjoint(eval_ids: list[str], used: frozenset[str], what: str) -> None:
    overlap = sorted(set(eval_ids) & used)
    if overlap:
        raise SplitOverlap(
            f"{what}: {len(overlap)} evaluation queries are in its train/calibration labels "
            f"(e.g. {overlap[0]!r}); build the labels file from a split that excludes the evaluated queries"
        )


def cross_fit(labels: list[dict[str, object]], folds: int, seed: int, what: str,
              fit_score: Callable[[list[LabelRow], list[LabelRow]], np.ndarray]) -> np.ndarray:
    """The replay protocol's cross-fitting: k folds by query (seeded); each held-out fold is scored by
    ``fit_score(train, held_out)``, a model fitted on the other folds only, so no query is scored by a
    model that saw its label."""
    from sklearn.model_selection import KFold

    rows = label_rows(labels, "grid labels")
    if len(rows) < 2:
        raise UserError(f"'{what}' needs at least 2 labelled queries to cross-fit")
    out = np.zeros(len(rows))
    kfold = KFold(n_splits=min(folds, len(rows)), shuffle=True, random_state=seed)
    for tr, te in kfold.split(np.arange(len(rows))):
        train, held_out = [rows[i] for i in tr], [rows[i] for i in te]
        assert_disjoint([x.query_id for x in held_out], frozenset(x.query_id for x in train), what)
        out[te] = np.asarray(fit_score(train, held_out), dtype=float)
    return out

