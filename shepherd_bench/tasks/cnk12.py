"""CNK12: the ``cn_k12`` rows of OpenR1-Math-220k, a seeded sample (2,147 by default, as in the
shepherding paper). Local copy: any ``.jsonl``/``.json``/``.parquet`` files under ``<data-dir>/cnk12/``
in the dataset's schema (fields used: ``problem``, ``answer``, ``source``; ``uuid`` if present)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from .base import MATH_INSTRUCTION, Dataset, Doc
from .data import (
    DataNotFound,
    HubSpec,
    RawData,
    data_dir_from,
    load_hub,
    read_rows,
    require_fields,
    sha256_files,
)
from .math_task import MathTask

SOURCE = "cn_k12"
DEFAULT_SIZE = 2147
DEFAULT_SEED = 0
FIELDS = ("problem", "answer", "source")
SUFFIXES = (".jsonl", ".json", ".parquet")
def prompt(problem: str) -> str:
    return f"{problem.strip()}\n\n{MATH_INSTRUCTION}"



def hub_spec(config: str) -> HubSpec:
    return HubSpec("cnk12", "cnk12/<file>.parquet|.jsonl", "open-r1/OpenR1-Math-220k", config, "train")


def local_files(base: Path) -> list[Path]:
    folder = base / "cnk12"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in SUFFIXES) if folder.is_dir() else []
    if not files:
        raise DataNotFound(
            f"cnk12: no data files in {folder}. Put OpenR1-Math-220k files (.parquet, .jsonl or .json) "
            f"in <data-dir>/cnk12/ and pass --data-dir <data-dir> (or set SHEPHERD_BENCH_DATA)."
        )
    return files


def load_local(base: Path) -> RawData:
    files = local_files(base)
    rows: list[dict[str, Any]] = []
    for f in files:
        part = read_rows(f)
        require_fields(part, FIELDS, str(f))
        rows.extend(part)
    return RawData(rows, str(base / "cnk12"), sha256_files(files))


def sample_rows(rows: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """The seeded sample of ``cn_k12`` rows with a non-empty answer, in a deterministic order."""
    pool = [r for r in rows if r.get("source") == SOURCE and str(r.get("answer") or "").strip()]
    pool.sort(key=lambda r: (str(r.get("uuid", "")), str(r["problem"])))
    if size >= len(pool):
        return pool
    return random.Random(seed).sample(pool, size)


def row_to_doc(row: dict[str, Any], index: int) -> Doc:
    uid = str(row.get("uuid") or index)
    record = {"gold": str(row["answer"]).strip(), "solution": row.get("solution", "")}
    return Doc(id=f"cnk12/{uid}", prompt=prompt(str(row["problem"])), record=record)


class CNK12(MathTask):
    name = "cnk12"
    max_tokens = 1024

    def __init__(self, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, hub_config: str = "all") -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.hub_config = hub_config

    def load(self, data_dir: Path | str | os.PathLike[str] | None = None) -> Dataset:
        base = data_dir_from(data_dir)
        raw = load_local(base) if base is not None else load_hub(hub_spec(self.hub_config))
        if base is None:
            require_fields(raw.rows, FIELDS, raw.source)
        docs = [row_to_doc(r, i) for i, r in enumerate(sample_rows(raw.rows, self.size, self.seed))]
        return Dataset(docs, raw.source, raw.sha256)
