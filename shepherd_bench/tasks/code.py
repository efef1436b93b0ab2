"""Code tasks: program extraction from chat answers, sandbox jobs, and pass/fail scoring.

A code doc's ``record`` carries ``entry_point`` (the function under test), ``tests`` (grading code,
never shown to strategies) and optionally ``code_prompt`` (code the answer continues, HumanEval).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..sandbox import Job, Verdict, calibrate_timeout, run_batch
from ..strategies.base import Query
from .base import SYSTEM_CODE, Doc, Score, chat

REFERENCE_TIMES_PATH = Path(__file__).resolve().parent / "reference_times.json"
REFERENCE_FACTOR = 5.0  # a correct answer may be this much slower than the reference


@functools.cache
def reference_times() -> dict[str, dict[str, float]]:
    """Measured reference runtimes per task and problem id (``scripts/measure_reference_times.py``)."""
    if not REFERENCE_TIMES_PATH.exists():
        return {}
    return dict(json.loads(REFERENCE_TIMES_PATH.read_text()))


CODE_FENCE = "```python\n"
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = {"", "python", "py", "python3"}


def fenced_blocks(text: str) -> list[str]:
    """Python (or unlabelled) fenced blocks, in order; an unclosed last fence counts (truncated answer)."""
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _CODE_LANGS]


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def choose_block(blocks: list[str], entry_point: str) -> str:
    """The last block defining the entry point, else the longest block."""
    defining = [b for b in blocks if defines(b, entry_point)]
    if defining:
        return defining[-1]
    return max(blocks, key=len)


def extract_program(answer: str, entry_point: str, code_prompt: str = "") -> str:
    """The whole program an answer stands for.

    - Fenced blocks: the block defining ``entry_point`` (last one wins), else the longest.
    - No fence: the answer itself.
    - With a ``code_prompt`` (HumanEval): a body-only answer is a completion of the prompt, so the
      program is prompt + answer; a full function is placed after the prompt (which keeps the prompt's
      imports and helper functions; the prompt's docstring-only stub is then redefined); a block that
      starts with the prompt itself (the prompt was prefilled into the answer) is the whole program.
    """
    blocks = fenced_blocks(answer)
    code = choose_block(blocks, entry_point) if blocks else answer
    code = code.strip("\n")
    if not code.strip():
        return ""
    if not code_prompt or code.startswith(code_prompt.strip("\n")):  # the prompt prefilled: a whole program
        return code + "\n"
    if defines(code, entry_point):
        return code_prompt.rstrip() + "\n\n\n" + code + "\n"
    return code_prompt + code + "\n"


def verdict_score(v: Verdict) -> Score:
    return Score(correct=v.passed, status=v.status, detail=v.detail)


class CodeTask:
    """Shared behaviour of code tasks; subclasses load docs and render prompts."""

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["code", "math"]] = "code"
    max_tokens: ClassVar[int] = 512
    timeout_s: ClassVar[float] = 5.0  # per-problem floor; the measured reference runtime may raise it
    memory_mb: ClassVar[int] = 2048

    def answer_prefix(self, doc: Doc) -> str:
        """What the answer is known to start with, prefilled for every model: the code fence, then the
        code prompt (HumanEval: imports, signature and docstring), so no model pays to restate it."""
        return CODE_FENCE + str(doc.record.get("code_prompt", ""))

    def query(self, doc: Doc) -> Query:
        return Query(
            id=doc.id,
            messages=chat(SYSTEM_CODE, doc.prompt),
            max_tokens=self.max_tokens,
            public_examples=str(doc.record.get("public_examples", "")),
            task=self.name,
            kind=self.kind,
            answer_prefix=self.answer_prefix(doc),
        )

    def time_limit(self, doc: Doc) -> float:
        """The problem's time limit: REFERENCE_FACTOR x its reference solution's measured runtime, never
        below the task's floor (evalplus style); the floor alone where no runtime was measured."""
        ref = reference_times().get(self.name, {}).get(doc.id)
        if ref is None:
            return self.timeout_s
        return calibrate_timeout(ref, floor=self.timeout_s, factor=REFERENCE_FACTOR)

    def reference_answer(self, doc: Doc) -> dict[str, str]:
        """The upstream reference as ``build_job`` keyword arguments (a completion or a whole program)."""
        rec = doc.record
        if "canonical_solution" in rec:
            return {"completion": str(rec["canonical_solution"])}
        return {"solution": str(rec["reference"])}

    def build_job(self, doc: Doc, completion: str | None = None, solution: str | None = None) -> Job:
        """A sandbox job for ``doc``: ``completion`` continues the code prompt, ``solution`` is a whole
        program; exactly one must be given."""
        if (completion is None) == (solution is None):
            raise ValueError("build_job needs exactly one of completion= or solution=")
        rec = doc.record
        program = rec.get("code_prompt", "") + completion if completion is not None else str(solution)
        timeout = self.time_limit(doc)
        return Job(program=program, tests=str(rec["tests"]), timeout=timeout, memory_mb=self.memory_mb,
                   entry_point=str(rec.get("entry_point") or "") or None)

    def program_for(self, doc: Doc, answer: str) -> str:
        rec: dict[str, Any] = doc.record
        return extract_program(answer, str(rec["entry_point"]), str(rec.get("code_prompt", "")))

    def score(self, docs: list[Doc], answers: list[str], workers: int | None = None) -> list[Score]:
        if len(docs) != len(answers):
            raise ValueError(f"{len(docs)} docs but {len(answers)} answers")
        programs = [self.program_for(d, a) for d, a in zip(docs, answers, strict=True)]
        todo = [i for i, p in enumerate(programs) if p.strip()]
        jobs = [self.build_job(docs[i], solution=programs[i]) for i in todo]
        verdicts = run_batch(jobs, workers=workers) if jobs else []
        scores = [Score(False, "no_answer", "empty program")] * len(docs)
        for i, v in zip(todo, verdicts, strict=True):
            scores[i] = verdict_score(v)
        return scores
