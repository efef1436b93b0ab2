"""Reactive features from the SLM's first samples, computed by one function for training and serving.

A reactive predictor reads, besides the query, what the SLM does unaided: its first ``FIRST_SAMPLES``
samples at hint level 0. The grid stores them as rows (``features.reactive_table``: training, replay);
the live shepherd strategy draws them itself (``sample_requests``: the very requests the grid sends, one
batched call). Both turn each sample into a ``ReactiveSample`` and call ``reactive_features``, so the
features a model was trained on and the ones it is served cannot drift apart.

A sample's answer key is what the task's scorer extracts (math: the final answer, see
``tasks.math_task.score_answer``; code tasks extract nothing), else its stripped text. Live, the
extraction runs without any gold answer (``live_extracted``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .features import REACTIVE_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from ..backends.base import GenRequest, GenResult
    from ..strategies.base import Query

FIRST_SAMPLES = 3  # the features read the first this-many samples of level 0
FEATURE_COLUMNS = (*REACTIVE_NAMES, "slm_sample_tokens")


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def sample_key(extracted: Any, text: Any) -> str:
    """The answer a sample gives: its extracted answer, else its text stripped."""
    return str(text).strip() if _missing(extracted) else str(extracted)


def live_extracted(text: str, kind: str) -> str | None:
    """``Score.extracted`` as the task's scorer would store it for ``text``, without the gold answer:
    math tasks extract the final answer (``math_task.score_answer``), code tasks extract nothing."""
    if kind != "math":
        return None
    from ..tasks.math_answers import extract_answer

    return extract_answer(text)


@dataclass(frozen=True)
class ReactiveSample:
    """One level-0 SLM sample as the features see it."""

    key: str
    output_tokens: int
    mean_logprob: float | None
    input_tokens: int

    @classmethod
    def from_row(cls, extracted: Any, text: Any, output_tokens: Any, mean_logprob: Any,
                 input_tokens: Any) -> ReactiveSample:
        """From a grid row's ``extracted, text, slm_output_tokens, slm_mean_logprob, slm_input_tokens``."""
        lp = None if _missing(mean_logprob) else float(mean_logprob)
        return cls(sample_key(extracted, text), int(output_tokens), lp, int(input_tokens))

    @classmethod
    def from_result(cls, res: GenResult, kind: str) -> ReactiveSample:
        """From a live SLM result (``kind``: math or code), as ``grid.slm_row`` would store it."""
        from ..research.grid import mean_logprob

        return cls.from_row(live_extracted(res.text, kind), res.text, res.output_tokens,
                            mean_logprob(res.token_logprobs), res.input_tokens)


def reactive_features(samples: Sequence[ReactiveSample], first: int = FIRST_SAMPLES) -> dict[str, float]:
    """``REACTIVE_NAMES`` from the first ``first`` samples (in sample order), plus ``slm_sample_tokens``
    (their SLM input + output tokens): agreement = share of the most common answer key; mean and
    sample standard deviation (0 for one sample) of ``log(1 + output tokens)``; mean of the samples'
    mean log-probabilities (a missing one counts as 0)."""
    used = list(samples[:first])
    if not used:
        raise ValueError("reactive features need at least one SLM sample")
    n = len(used)
    loglen = [math.log1p(float(s.output_tokens)) for s in used]
    mean = sum(loglen) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in loglen) / (n - 1)) if n > 1 else 0.0
    lp = sum(0.0 if s.mean_logprob is None else s.mean_logprob for s in used) / n
    agree = Counter(s.key for s in used).most_common(1)[0][1] / n
    out = {"agreement": agree, "log_len_mean": mean, "log_len_std": std, "mean_logprob": lp,
           "n_samples": float(n), "slm_sample_tokens": float(sum(s.input_tokens + s.output_tokens for s in used))}
    return {k: out[k] for k in FEATURE_COLUMNS}


def feature_vector(features: dict[str, float]) -> list[float]:
    """The model's reactive input columns, in ``REACTIVE_NAMES`` order."""
    return [float(features[k]) for k in REACTIVE_NAMES]


def sample_requests(query: Query, samples: int, temperature: float, seed: int) -> list[GenRequest]:
    """The level-0 SLM requests a grid with ``--samples samples --temperature temperature --seed seed``
    sends for ``query`` (``grid.slm_request``: no prefix, the task's budget, seeds ``seed + s``,
    log-probabilities on)."""
    from ..research.grid import GridSpec, slm_request

    spec = GridSpec(levels=(0.0,), kind="tokens", samples=samples, temperature=temperature, seed=seed)
    return [slm_request(query, "", 0, spec, s, logprobs=True) for s in range(samples)]


__all__ = ["FEATURE_COLUMNS", "FIRST_SAMPLES", "ReactiveSample", "feature_vector", "live_extracted",
           "reactive_features", "reactive_table", "sample_key", "sample_requests"]


def reactive_table(grid_rows: pd.DataFrame, first: int = 3) -> pd.DataFrame:
    """Per query, from the first ``first`` SLM samples at level 0: agreement, lengths, mean log-prob,
    and the SLM tokens those samples cost. Each query's samples go through
    ``reactive.reactive_features``, the function the live shepherd strategy calls on its own samples."""
    import pandas as pd


    z = grid_rows[(grid_rows["level"] == 0) & ~grid_rows["full"].astype(bool)]
    z = z[z["sample"] < first].sort_values(["query_id", "sample"], kind="stable")
    by_query: dict[Any, list[ReactiveSample]] = {}
    cols = ("query_id", "extracted", "text", "slm_output_tokens", "slm_mean_logprob", "slm_input_tokens")
    for qid, *fields in zip(*(z[c] for c in cols), strict=True):
        by_query.setdefault(qid, []).append(ReactiveSample.from_row(*fields))
    rows = {qid: reactive_features(samples, first) for qid, samples in by_query.items()}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(FEATURE_COLUMNS))
    return out.rename_axis("query_id").astype(float)
