"""Two-stage hint predictor: features, training, evaluation and a live ``HintPolicy``.

Train and evaluate with ``python -m shepherd_bench.predictor {train,cv,transfer} --grid G ...``; use live
with ``shepherd-bench run --strategy shepherd -S policy=predicted -S predictor=PATH``; replay with
``shepherd-bench replay --grid G --policy predicted:PATH``. Nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_policy(path: str | Path, threshold: float | None = None, full_threshold: float | None = None) -> Any:
    """The trained predictor at ``path`` as a ``HintPolicy`` (``hint_for(query) -> int | "full"``)."""
    from .policy import load_policy as _load

    return _load(path, threshold, full_threshold)


__all__ = ["load_policy"]
