"""Shepherding with a reactive hint predictor, on a scripted pair: the SLM's first samples are drawn as the
grid draws them, featurised exactly as ``reactive_table`` featurises the grid's rows, paid for, and a
no-hint decision answers with the first sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.backends.base import GenRequest
from shepherd_bench.predictor import load_policy
from shepherd_bench.predictor.evaluate import fit, load_grid_data
from shepherd_bench.predictor.features import REACTIVE_NAMES
from shepherd_bench.predictor.model import TrainOptions
from shepherd_bench.predictor.policy import ReactiveFeaturesNeeded
from shepherd_bench.predictor.reactive import reactive_table
from shepherd_bench.research.grid import GridSpec, GridStore, build_grid, load_grid
from shepherd_bench.strategies import make_strategy
from shepherd_bench.strategies.base import ParamError, Query
from shepherd_bench.strategies.shepherd import HintSize, Shepherd
from shepherd_bench.tasks.base import Doc, chat
from shepherd_bench.tasks.gsm8k import GSM8K
from tests.scripted import failed, pair, tokens, words
from tests.test_predictor_synthetic import write_synthetic_grid

LLM_ANSWER = words(60, "L")
SLM_TAIL = "S0 S1 S2"


def slm(r: GenRequest) -> str:
    """Level-0 samples: problem 0 agrees, problem 1 disagrees (lengths vary), problem 2 agrees 2 of 3."""
    if r.prefix:
        return SLM_TAIL
    user = r.messages[-1].content
    if "problem 0" in user:
        return "so the answer is\n#### 7"
    if "problem 1" in user:
        return "step " * (r.seed + 1) + f"#### {r.seed}"
    return "#### 5" if r.seed < 2 else "think more #### 6"


def logprob(r: GenRequest) -> float:
    return -0.1 * (r.seed + 1)


class _Reactive:
    """A reactive HintPolicy that records the features it was given."""

    reactive = True
    sampling = {"samples": 3, "temperature": 0.7}

    def __init__(self, sizes: dict[str, HintSize]) -> None:
        self.sizes = sizes
        self.seen: dict[str, dict[str, float]] = {}

    def hint_for(self, query: Query, reactive: dict[str, float] | None = None) -> HintSize:
        assert reactive is not None
        self.seen[query.id] = dict(reactive)
        return self.sizes[query.id]


def docs(n: int = 3) -> list[Doc]:
    return [Doc(f"gsm8k/{i}", f"problem {i}: how many?", {"gold": "7"}) for i in range(n)]


def test_live_samples_and_features_equal_the_grids(tmp_path: Path) -> None:
    task, ds = GSM8K(), docs()
    gmodels, gsmall, _ = pair(slm, lambda r: LLM_ANSWER, logprob=logprob)
    spec = GridSpec(levels=(0.0,), kind="tokens", samples=3, temperature=0.7, seed=0)
    store = GridStore(tmp_path / "grid")
    store.open({"spec": {"samples": 3, "temperature": 0.7, "seed": 0}}, "fp")
    build_grid(task, ds, gmodels, spec, store)
    rows = load_grid(store.root)
    table = reactive_table(rows)

    models, small, large = pair(slm, lambda r: LLM_ANSWER, logprob=logprob)
    policy = _Reactive({"gsm8k/0": 0, "gsm8k/1": 8, "gsm8k/2": "full"})
    strat = Shepherd(policy="predicted", predictor="unused").with_policy(policy)
    a0, a1, a2 = strat.solve([task.query(d) for d in ds], models)

    # ONE batched call for every query's first samples: the very requests the grid sent at level 0
    assert small.batches[0] == gsmall.batches[0] and len(small.batches[0]) == 9
    assert all(r.logprobs and r.temperature == 0.7 and r.prefix == "" for r in small.batches[0])
    assert [r.seed for r in small.batches[0]] == [0, 1, 2] * 3
    assert len(small.batches) == 2 and small.batches[1][0].prefix  # then only q1's continuation
    assert [r.max_tokens for r in large.requests] == [8, GSM8K.max_tokens]

    for d, a in zip(ds, (a0, a1, a2), strict=True):
        want = table.loc[d.id]
        assert policy.seen[d.id] == want.to_dict()  # exact: one shared function
        assert list(want.index[: len(REACTIVE_NAMES)]) == list(REACTIVE_NAMES)
        sample_calls = a.calls[:3]
        assert [(c.role, c.purpose) for c in sample_calls] == [("small", "sample")] * 3
        paid = sum(c.input_tokens + c.output_tokens for c in sample_calls)
        assert paid > 0 and a.decision["slm_sample_tokens"] == paid == want["slm_sample_tokens"]
        assert a.decision["reactive_samples"] == 3 and a.decision["sample_temperature"] == 0.7
    assert [policy.seen[f"gsm8k/{i}"]["agreement"] for i in range(3)] == [1.0, pytest.approx(1 / 3),
                                                                          pytest.approx(2 / 3)]

    level0 = rows[(rows["level"] == 0) & (rows["sample"] == 0)].set_index("query_id")
    assert a0.answer == level0.loc["gsm8k/0", "text"] and len(a0.calls) == 3  # no second SLM call
    assert a0.decision["hint_tokens"] == 0 and a0.decision["answer_sample"] == 0
    assert [c.purpose for c in a1.calls[3:]] == ["hint", "continue"]
    assert a1.answer == "".join(tokens(LLM_ANSWER)[:8]) + SLM_TAIL and "answer_sample" not in a1.decision
    assert [(c.role, c.purpose) for c in a2.calls[3:]] == [("large", "answer")] and a2.answer == LLM_ANSWER


def test_a_failed_sample_call_is_an_error_and_gets_no_hint() -> None:
    def small(r: GenRequest) -> Any:
        return failed("oom") if "problem 1" in r.messages[-1].content and r.seed == 2 else slm(r)

    models, _, large = pair(small, lambda r: LLM_ANSWER, logprob=logprob)
    policy = _Reactive({"gsm8k/0": 8, "gsm8k/1": 8})
    a0, a1 = Shepherd(policy="predicted", predictor="x").with_policy(policy).solve(
        [GSM8K().query(d) for d in docs(2)], models)
    assert a1.error == "small sample call failed: oom" and a1.answer == "" and len(a1.calls) == 3
    assert "gsm8k/1" not in policy.seen and len(large.requests) == 1
    assert a0.error is None and a0.decision["hint_tokens"] == 8


@pytest.fixture(scope="module")
def reactive_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reactive predictor trained on the synthetic grid: a hint is needed iff the query says 'zebra',
    and there the SLM's samples disagree and run long."""
    root = tmp_path_factory.mktemp("syn") / "grid"
    write_synthetic_grid(root, n=80)
    data = load_grid_data(root)
    model = fit(data, TrainOptions(featurizer="hashed-tfidf", reactive=True))
    assert model.meta["reactive_sampling"] == {"samples": 3, "temperature": None, "grid_seed": None}
    return model.save(root.parent / "model")


def test_a_saved_reactive_predictor_runs_live(reactive_model: Path) -> None:
    def small(r: GenRequest) -> str:
        if r.prefix:
            return SLM_TAIL
        if "zebra" in r.messages[-1].content:
            return " ".join(f"x{r.seed}" for _ in range(30))
        return "a b c d e f g h i #### 1"

    q_yes = Query("yes", chat("s", "zebra " + " ".join(["apple"] * 20)), 100, kind="math")
    q_no = Query("no", chat("s", "apple river stone"), 100, kind="math")
    models, s, _ = pair(small, lambda r: LLM_ANSWER, logprob=lambda r: -1.0 if "zebra" in r.messages[-1].content
                        else -0.1)
    strat = make_strategy("shepherd", {"policy": "predicted", "predictor": str(reactive_model)})
    a_yes, a_no = strat.solve([q_yes, q_no], models)
    assert len(s.batches[0]) == 6 and all(r.temperature == 0.7 for r in s.batches[0])  # params: none recorded
    assert a_no.decision["hint_target"] == 0 and a_no.answer == "a b c d e f g h i #### 1"
    assert a_no.decision["reactive_features"]["agreement"] == 1.0 and a_no.decision["reactive"] is True
    assert a_yes.decision["hint_target"] != 0 and a_yes.decision["reactive_features"]["agreement"] == 1 / 3
    assert a_yes.decision["p_need"] > 0.5 > a_no.decision["p_need"]
    assert [c.purpose for c in a_no.calls] == ["sample"] * 3


def test_reactive_without_samples_fails_clearly(reactive_model: Path, tmp_path: Path) -> None:
    policy = load_policy(reactive_model)
    q = Query("q", chat("s", "apple river stone"), 100)
    with pytest.raises(ReactiveFeaturesNeeded, match="shepherd strategy"):
        policy.hint_for(q)

    policy.model.meta["reactive_sampling"] = {"samples": 3, "temperature": 0.7}
    models, _, _ = pair(slm, lambda r: LLM_ANSWER)
    for params in ({"samples": "2"}, {"temperature": "0.9"}):
        strat = Shepherd(policy="predicted", predictor="x", **params).with_policy(policy)
        with pytest.raises(ParamError, match="trained on"):
            strat.solve([q], models)
