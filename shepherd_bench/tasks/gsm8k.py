"""GSM8K test split (1,319 grade-school math word problems)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import MATH_INSTRUCTION, Dataset, Doc
from .data import DataFormatError, HubSpec, RawData, load_local_or_hub, require_fields
from .math_answers import gsm8k_gold
from .math_task import MathTask

SPEC = HubSpec("gsm8k", "gsm8k/test.jsonl", "openai/gsm8k", "main", "test")
def prompt(question: str) -> str:
    return f"{question.strip()}\n\n{MATH_INSTRUCTION}"



def row_to_doc(i: int, row: dict[str, Any], source: str) -> Doc:
    try:
        gold = gsm8k_gold(str(row["answer"]))
    except ValueError as e:
        raise DataFormatError(f"{source}: record {i}: {e}") from None
    record = {"gold": gold, "solution": row["answer"]}
    return Doc(id=f"gsm8k/{i}", prompt=prompt(str(row["question"])), record=record)


def docs_from(raw: RawData) -> list[Doc]:
    require_fields(raw.rows, ("question", "answer"), raw.source)
    return [row_to_doc(i, r, raw.source) for i, r in enumerate(raw.rows)]


class GSM8K(MathTask):
    name = "gsm8k"
    max_tokens = 512

    def load(self, data_dir: Path | None = None) -> Dataset:
        raw = load_local_or_hub(data_dir, SPEC)
        return Dataset(docs_from(raw), raw.source, raw.sha256)
