"""The paper's claims table on a synthetic grid with a known answer (a hint is needed iff the query has
the marker word; n* grows with the query's length), and the verdict rule on hand-made intervals."""

from __future__ import annotations

from pathlib import Path

import pytest

from shepherd_bench.research.claims import FAILS, HOLDS, NOT_MEASURED, UNSURE, _verdict, claims, hint_fraction
from shepherd_bench.research.replay import open_replay, run_policies
from tests.test_predictor_synthetic import N_FULL, write_synthetic_grid


def test_verdict_needs_the_whole_interval_on_one_side() -> None:
    assert _verdict(0.01, 0.2, 0.0) == HOLDS
    assert _verdict(-0.2, -0.01, 0.0) == FAILS
    assert _verdict(-0.1, 0.1, 0.0) == UNSURE
    assert _verdict(None, None, 0.0) == NOT_MEASURED
    assert _verdict(None, -0.5, 0.0) == FAILS  # the low end not reached, the high end below


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = tmp_path_factory.mktemp("claims") / "grid"
    write_synthetic_grid(root, n=120, seed=3)
    rp = open_replay(root, llm_price="gpt-4o", slm_price="free")
    return run_policies(rp, ["slm", "llm", "oracle", "oracle-route", "oracle-cascade", "tokens:16", "tokens:64",
                             "cascade:logprob", "route:random"])


def test_claims_on_a_synthetic_grid(replay: object) -> None:
    rows = claims(replay, "0.95", B=400, seed=0)  # type: ignore[arg-type]
    by = {}
    for r in rows:
        by.setdefault(r["claim"][0], []).append(r)
    one = {r["measure"].split()[0]: r for r in by["1"]}
    # 16 of the 80-token answer is 20%: in range, and it helps the queries needing <= 16 tokens
    assert "20% of the answer" in one["tokens:16"]["measure"] and one["tokens:16"]["verdict"] == HOLDS
    assert one["tokens:64"]["verdict"].startswith(NOT_MEASURED)  # 80% of the answer: outside 10-30%
    # sized per query: every answer is 80 tokens, so each query's level nearest 20% is 16, as tokens:16
    assert "120 of 120 queries have one; median hint 20%" in one["per"]["measure"]
    assert (one["per"]["value"], one["per"]["ci"], one["per"]["verdict"]) == (
        one["tokens:16"]["value"], one["tokens:16"]["ci"], HOLDS)
    # the oracle hints exactly what each query needs: cheaper than paying the whole answer
    assert all(r["verdict"] == HOLDS and r["value"].startswith("-$") for r in by["2"])
    assert by["3"][0]["verdict"] == NOT_MEASURED and by["4"][0]["verdict"] == NOT_MEASURED


def test_hint_fraction_is_the_median_over_hinted_queries(replay: object) -> None:
    tokens16 = next(p for p in replay.singles if p.name == "tokens:16")  # type: ignore[attr-defined]
    assert hint_fraction(tokens16, replay.lt) == pytest.approx(16 / N_FULL)  # type: ignore[attr-defined]
    slm = next(p for p in replay.singles if p.name == "slm")  # type: ignore[attr-defined]
    assert hint_fraction(slm, replay.lt) is None  # type: ignore[attr-defined]


def test_claims_with_a_predictor_curve(tmp_path: Path) -> None:
    """With the cross-fitted predictor (which recovers the marker), claims 3-5 are measured; on this
    grid the predictor saves against LLM-only at matched accuracy."""
    root = tmp_path / "grid"
    write_synthetic_grid(root, n=120, seed=4)
    rp = run_policies(open_replay(root, llm_price="gpt-4o", slm_price="free"),
                      ["slm", "llm", "oracle", "tokens:16", "tokens:64", "route:random", "predicted:cv"])
    rows = claims(rp, "0.95", B=400, seed=0)
    three = next(r for r in rows if r["claim"].startswith("3"))
    assert three["verdict"] == HOLDS
    assert {r["claim"][0] for r in rows} == {"1", "2", "3", "4", "5"}
    four = [r for r in rows if r["claim"].startswith("4")]
    assert len(four) == 2 and "ratio of costs" in four[0]["measure"]


def test_ratio_verdicts_when_a_curve_does_not_reach_the_target() -> None:
    from shepherd_bench.research.claims import ratio_verdict

    assert ratio_verdict(0.8, 0.6, 0.95, 1.0, True) == HOLDS
    assert ratio_verdict(1.2, 1.05, 1.4, 1.0, True) == FAILS
    assert ratio_verdict(1.0, 0.8, 1.2, 1.0, True) == UNSURE
    assert ratio_verdict(None, 0.0, 0.0, 1.0, True) == HOLDS  # only the predictor reaches the target
    assert ratio_verdict(None, None, None, 1.0, False) == FAILS  # the predictor does not reach it
    assert ratio_verdict(1.2, 1.0, 1.4, 1.5, True) == HOLDS  # within 1.5x


def test_relative_hints_pick_the_level_nearest_20_percent_of_each_answer() -> None:
    import pandas as pd

    from shepherd_bench.research.outcomes import relative_hint_rows

    def rows(qid: str, answer: int, levels: list[int]) -> list[dict[str, object]]:
        return [{"query_id": qid, "level": float(k), "hint_tokens": min(k, answer), "full": k >= answer,
                 "llm_output_tokens": answer, "acc": 1.0, "cost": float(k)} for k in [0, *levels]]

    lt = pd.DataFrame(rows("a", 100, [16, 32, 64])  # 16% and 32%: 16 (4 from 20%) is inside, 32 is not
                      + rows("b", 200, [16, 32, 64])  # 8%, 16%, 32%: 32 is the only one inside
                      + rows("c", 40, [16, 32, 64])  # 40%, 80%, full: none inside
                      + rows("d", 160, [16, 32, 48])  # 10% and 30% at the edges, 20% exactly: 32
                      + rows("e", 120, [24, 36]))  # 20% and 30%: 24
    got = relative_hint_rows(lt).set_index("query_id")["hint_tokens"].to_dict()
    assert got == {"a": 16, "b": 32, "d": 32, "e": 24}
    edges = relative_hint_rows(lt[lt["level"] != 32])
    assert edges.set_index("query_id")["hint_tokens"].to_dict() == {"a": 16, "d": 16, "e": 24}  # d: tie -> smaller
