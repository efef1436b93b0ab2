"""MBPP: the full set's test split (task_ids 11-510, 500 problems) and its sanitized subset (257).

The prompt shows the three tests, as in the original paper (Austin et al. 2021).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import Dataset, Doc
from .code import CodeTask
from .data import HubSpec, RawData, load_local_or_hub, require_fields

TEST_IDS = range(11, 511)
FULL = HubSpec("mbpp", "mbpp/mbpp.jsonl", "google-research-datasets/mbpp", "full", "test")
SANITIZED = HubSpec("mbpp_sanitized", "mbpp/sanitized-mbpp.json", "google-research-datasets/mbpp",
                    "sanitized", "test")
FULL_FIELDS = ("task_id", "text", "code", "test_list", "test_setup_code")
SANITIZED_FIELDS = ("task_id", "prompt", "code", "test_list", "test_imports")
PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{tests}\n\n"
    "Write the function in a single ```python code block."
)
# Upstream test-split problems whose own reference program fails its tests on CPython 3.11 (kept in
# the benchmark, as upstream has them): 341 asserts the order of a tuple built from a set
# ({12, ..., 16} iterates 16 first). Outside the test split, 596 (tuple sizes of an older CPython)
# and 642 (set iteration order) fail too.
UPSTREAM_FAILURES: dict[int, str] = {341: "asserts the iteration order of a set of ints"}
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_DEF = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def entry_point(code: str, tests: list[str]) -> str:
    """The function the tests call: the first defined function named in the tests, else the first call."""
    joined = "\n".join(tests)
    for name in _DEF.findall(code):
        if re.search(rf"\b{re.escape(name)}\s*\(", joined):
            return str(name)
    calls = [c for c in _CALL.findall(joined) if c not in {"assert", "set", "math", "isclose", "sorted"}]
    return calls[0] if calls else ""


def make_doc(row: dict[str, Any], text: str, setup: str) -> Doc:
    tests = [str(t) for t in row["test_list"]]
    visible = "\n".join(tests)
    record = {
        "task_id": int(row["task_id"]),
        "entry_point": entry_point(str(row["code"]), tests),
        "tests": (setup.strip() + "\n\n" if setup.strip() else "") + visible + "\n",
        "reference": str(row["code"]),
        "public_examples": visible,
    }
    return Doc(id=f"mbpp/{row['task_id']}", prompt=PROMPT.format(text=text.strip(), tests=visible), record=record)


def full_docs(raw: RawData) -> list[Doc]:
    require_fields(raw.rows, FULL_FIELDS, raw.source)
    rows = sorted((r for r in raw.rows if int(r["task_id"]) in TEST_IDS), key=lambda r: int(r["task_id"]))
    return [make_doc(r, str(r["text"]), str(r.get("test_setup_code") or "")) for r in rows]


def sanitized_docs(raw: RawData) -> list[Doc]:
    require_fields(raw.rows, SANITIZED_FIELDS, raw.source)
    rows = sorted((r for r in raw.rows if int(r["task_id"]) in TEST_IDS), key=lambda r: int(r["task_id"]))
    return [make_doc(r, str(r["prompt"]), "\n".join(r.get("test_imports") or [])) for r in rows]


class MBPP(CodeTask):
    name = "mbpp"
    timeout_s = 5.0

    def load(self, data_dir: Path | None = None) -> Dataset:
        raw = load_local_or_hub(data_dir, FULL)
        return Dataset(full_docs(raw), raw.source, raw.sha256)


class MBPPSanitized(CodeTask):
    name = "mbpp_sanitized"
    timeout_s = 5.0

    def load(self, data_dir: Path | None = None) -> Dataset:
        raw = load_local_or_hub(data_dir, SANITIZED)
        return Dataset(sanitized_docs(raw), raw.source, raw.sha256)
