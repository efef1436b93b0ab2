"""Task interface shared by our runner, the hint grid and the lm-eval task definitions in ``tasks/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from ..backends.base import Message
from ..strategies.base import Query

Status = Literal["pass", "fail", "timeout", "error", "no_answer"]


@dataclass(frozen=True)
class Doc:
    """One benchmark item, including grading material (never shown to strategies)."""

    id: str
    prompt: str  # the user turn
    record: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Score:
    correct: bool
    status: Status
    detail: str = ""
    extracted: str | None = None  # math: the extracted answer; None = extraction failed


@dataclass(frozen=True)
class Dataset:
    docs: list[Doc]
    source: str  # a local path or a hub id
    sha256: str  # of the raw file(s) the docs came from


class Task(Protocol):
    name: ClassVar[str]
    kind: ClassVar[Literal["code", "math"]]
    max_tokens: ClassVar[int]

    def load(self, data_dir: Path | None = None) -> Dataset: ...

    def query(self, doc: Doc) -> Query: ...

    def score(self, docs: list[Doc], answers: list[str], workers: int | None = None) -> list[Score]: ...


SYSTEM_CODE = "You are an expert Python programmer."
SYSTEM_MATH = "You are a careful math solver."
# Question first, reasoning before the conclusion, the final answer boxed: the convention these
# instruct models are trained on. Shared by every math task, model and strategy.
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def chat(system: str, user: str) -> tuple[Message, ...]:
    return (Message("system", system), Message("user", user))
