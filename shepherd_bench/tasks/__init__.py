"""Benchmark tasks: loaders, prompts and scorers behind the lm-eval definitions in ``tasks/``.

``get_task("gsm8k")`` returns a ready Task; options (e.g. ``get_task("cnk12", size=200, seed=1)``)
go to the task's constructor. Plugins add tasks through the entry-point group ``shepherd_bench.tasks``.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..registry import Registry, UnknownName
from .base import Dataset, Doc, Score, Task, chat
from .data import DATA_ENV, DataError, DataFormatError, DataNotFound

TASKS: Registry[type[Task]] = Registry("task", "shepherd_bench.tasks")
for _name, _target in {
    "humaneval": "shepherd_bench.tasks.humaneval:HumanEval",
    "mbpp": "shepherd_bench.tasks.mbpp:MBPP",
    "mbpp_sanitized": "shepherd_bench.tasks.mbpp:MBPPSanitized",
    "gsm8k": "shepherd_bench.tasks.gsm8k:GSM8K",
    "cnk12": "shepherd_bench.tasks.cnk12:CNK12",
}.items():
    TASKS.register(_name, _target)


def task_names() -> list[str]:
    return TASKS.names()


def get_task(name: str, **options: Any) -> Task:
    """An instance of the task ``name``; unknown names raise UnknownName with the close match."""
    cls = TASKS.get(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        accepted = [p for p in inspect.signature(cls).parameters if p not in {"args", "kwargs"}]
        raise ValueError(
            f"task '{name}' does not take options {sorted(options)}; valid options: {', '.join(accepted) or '(none)'}"
        ) from None
    return cls(**options)


__all__ = [
    "DATA_ENV", "DataError", "DataFormatError", "DataNotFound", "Dataset", "Doc", "Score", "Task",
    "TASKS", "UnknownName", "chat", "get_task", "task_names",
]
