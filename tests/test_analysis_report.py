"""Run folders -> frames, reports (md golden, csv, json), plots and the leaderboard, on synthetic runs."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shepherd_bench.analysis.leaderboard import export_run, write_leaderboard
from shepherd_bench.analysis.report import build_report
from shepherd_bench.analysis.runs import align_runs, find_sweeps, load_run
from shepherd_bench.prices import load_prices

GOLDEN = Path(__file__).parent / "golden"
PRICES = {
    "date": "2026-01-01",
    "notes": "Test prices.",
    "models": {"big": {"input": 1.0, "cached_input": 0.5, "output": 2.0},
               "free": {"input": 0.0, "output": 0.0}},
    "aliases": {"embedded-llm": "big"},
}


# --- helpers -----------------------------------------------------------------------------------------

def write_prices(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / "prices.json"
    p.write_text(json.dumps(PRICES))
    return p


def call(role: str, inp: int, out: int, cached: int = 0) -> dict[str, Any]:
    return {"role": role, "input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out,
            "latency_s": 0.1, "cached": False, "error": None, "purpose": "answer"}


def write_run(root: Path, name: str, strategy: str, params: dict[str, Any], correct: list[bool | None],
              llm_out: list[int], *, task: str = "toy", ids: list[str] | None = None,
              kind: str = "baseline") -> Path:
    """A run folder as the runner writes it: LLM calls of 100 input tokens and ``llm_out[i]`` output
    tokens (none when 0), one SLM call per query."""
    d = root / name
    d.mkdir(parents=True)
    ids = ids or [f"q{i:03d}" for i in range(len(correct))]
    manifest = {"task": task, "strategy": {"strategy": strategy, "kind": kind, "params": params},
                "seed": 0, "slm": {"identity": {"kind": "cpu", "model": "tiny-slm"}, "price": "free"},
                "llm": {"identity": {"kind": "cpu", "model": "tiny-llm"}, "price": "embedded-llm"},
                "prices": {"date": PRICES["date"], "source": "prices.json"},
                "harness_version": "0.1.0", "created": "2026-01-02T03:04:05Z", "hardware": "2-core test box"}
    lines = []
    for i, (qid, ok, out) in enumerate(zip(ids, correct, llm_out, strict=True)):
        calls = [call("small", 100, 50)] + ([call("large", 100, out)] if out else [])
        lines.append(json.dumps({"query_id": qid, "index": i, "correct": ok,
                                 "status": "error" if ok is None else "ok",
                                 "error": "timeout" if ok is None else None, "calls": calls,
                                 "decision": {"hint_tokens": out}}))
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "samples.jsonl").write_text("\n".join(lines) + "\n")
    (d / "summary.json").write_text(json.dumps({"task": task, "strategy": strategy, "n": len(ids)}))
    return d


def toy_suite(root: Path, n: int = 60, task: str = "toy") -> list[Path]:
    """SLM-only, LLM-only, and a 3-point hint sweep with nested successes (deterministic)."""
    rng = np.random.default_rng(42)
    difficulty = rng.random(n)
    llm_len = (200 + 100 * rng.random(n)).astype(int)

    def ok(q: float) -> list[bool | None]:
        return [bool(d < q) for d in difficulty]

    slm_ok, llm_ok = ok(0.4), ok(0.8)
    paths = [write_run(root, f"{task}-slm", "slm", {}, slm_ok, [0] * n, task=task),
             write_run(root, f"{task}-llm", "llm", {}, llm_ok, llm_len.tolist(), task=task)]
    for k, q in ((16, 0.55), (64, 0.7), (128, 0.8)):
        paths.append(write_run(root, f"{task}-shep{k}", "shepherd", {"hint_tokens": k, "mode": "fixed"},
                               ok(q), [k] * n, task=task, kind="shepherd"))
    score = difficulty + 0.3 * rng.random(n)  # a noisy router: high score -> send to the LLM
    for thr in (0.5, 0.9):
        routed = score > thr
        paths.append(write_run(root, f"{task}-route{thr}", "route", {"threshold": thr},
                               [lo if r else s_ for r, lo, s_ in zip(routed, llm_ok, slm_ok, strict=True)],
                               [int(x) if r else 0 for r, x in zip(routed, llm_len, strict=True)],
                               task=task, kind="route"))
    return paths


# --- runs --------------------------------------------------------------------------------------------

def test_load_run_prices_each_sample(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path))
    d = write_run(tmp_path, "r", "llm", {}, [True, None], [100, 100])
    # cached input tokens are part of input_tokens and priced at the cached rate
    lines = (d / "samples.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["calls"] = [call("large", 1000, 100, cached=200)]
    lines[0] = json.dumps(rec)
    (d / "samples.jsonl").write_text("\n".join(lines) + "\n")
    run = load_run(d, prices)
    df = run.samples
    # (800 * 1.0 + 200 * 0.5 + 100 * 2.0) / 1e6
    assert df.loc[0, "cost_usd"] == pytest.approx(1.1e-3)
    assert df.loc[1, "cost_usd"] == pytest.approx((100 * 1.0 + 100 * 2.0) / 1e6)
    assert df.loc[0, "llm_input_tokens"] == 1000 and df.loc[1, "llm_output_tokens"] == 100
    assert df.loc[0, "correct"] == 1.0 and np.isnan(df.loc[1, "correct"])
    assert run.label == "llm" and run.llm == "tiny-llm" and run.date == "2026-01-02"


def test_resumed_run_keeps_last_record(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path))
    d = write_run(tmp_path, "r", "slm", {}, [False, True], [0, 0])
    with (d / "samples.jsonl").open("a") as f:
        f.write(json.dumps({"query_id": "q000", "index": 0, "correct": True, "calls": []}) + "\n")
    df = load_run(d, prices).samples
    assert len(df) == 2 and df.set_index("query_id").loc["q000", "correct"] == 1.0


def test_align_pairs_on_common_ids_and_says_so(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path))
    a = load_run(write_run(tmp_path, "a", "slm", {}, [True, False, True], [0, 0, 0], ids=["x", "y", "z"]), prices)
    b = load_run(write_run(tmp_path, "b", "llm", {}, [True, True], [10, 10], ids=["z", "y"]), prices)
    al = align_runs([a, b])
    assert al.query_ids == ["y", "z"]
    assert al.correct.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert al.dropped == {"slm": 1, "llm": 0}
    assert "2 common query ids" in al.note and "slm: 1" in al.note
    same = align_runs([a, a])
    assert "share the same" in same.note and same.names == ["slm [a]", "slm [a]"]


def test_sweeps_group_numeric_params(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path))
    runs = [load_run(p, prices) for p in toy_suite(tmp_path / "runs")]
    sweeps = find_sweeps(runs)
    assert len(sweeps) == 2
    shep = next(m for m in sweeps.values() if m[0].strategy == "shepherd")
    assert sorted(r.params["hint_tokens"] for r in shep) == [16, 64, 128]


# --- report ------------------------------------------------------------------------------------------

def _report(tmp_path: Path, fmt: str, **kw: Any) -> str:
    prices = load_prices(write_prices(tmp_path / "p"))
    paths = toy_suite(tmp_path / "runs")
    return build_report(paths, target=0.95, fmt=fmt, B=300, seed=0, prices=prices, **kw)


def test_markdown_report_matches_golden(tmp_path: Path) -> None:
    md = _report(tmp_path, "md")
    golden = GOLDEN / "report_toy.md"
    if os.environ.get("SHEPHERD_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(md)
    assert md == golden.read_text(), "report changed; rerun with SHEPHERD_UPDATE_GOLDEN=1 if intended"


def test_report_content_is_consistent(tmp_path: Path) -> None:
    doc = json.loads(_report(tmp_path, "json"))
    (task,) = doc["tasks"]
    rows = {r["strategy"]: r for r in task["strategies"]}
    rng = np.random.default_rng(42)  # the toy suite's own draws
    difficulty, llm_len = rng.random(60), (200 + 100 * rng.random(60)).astype(int)
    assert rows["llm"]["accuracy"] == pytest.approx(np.mean(difficulty < 0.8))
    assert rows["llm"]["usd_per_1k"] == pytest.approx(np.mean(100 * 1.0 + 2.0 * llm_len) / 1e6 * 1000)
    assert rows["slm"]["usd_per_1k"] == 0.0 and rows["llm"]["cost_reduction"] == pytest.approx(0.0)
    # hint of k tokens: 100 input + k output tokens priced at 1 and 2 USD per 1M
    shep = rows["shepherd(hint_tokens=16, mode=fixed)"]
    assert shep["usd_per_1k"] == pytest.approx((100 + 2 * 16) / 1e6 * 1000)
    assert shep["llm_tokens_per_query"] == pytest.approx(116)
    sweep = next(s for s in task["sweeps"] if s["sweep"].startswith("shepherd"))
    assert sweep["points"] == 3 and sweep["apgr"] is not None
    assert sweep["target_accuracy"] == pytest.approx(0.95 * rows["llm"]["accuracy"])
    assert task["bootstrap"]["error_policy"] == "wrong"


def test_csv_report(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_report(tmp_path, "csv"))))
    assert [r["strategy"] for r in rows][:2] == ["slm", "llm"]
    assert {"accuracy", "accuracy_low", "usd_per_1k", "cost_reduction", "ace"} <= set(rows[0])


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        _report(tmp_path, "html")


def test_plot_is_written_and_deterministic(tmp_path: Path) -> None:
    out1, out2 = tmp_path / "a" / "plot.png", tmp_path / "b" / "plot.png"
    _report(tmp_path / "x", "md", plot=out1)
    _report(tmp_path / "y", "md", plot=out2)
    data = out1.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == out2.read_bytes()


# --- leaderboard -------------------------------------------------------------------------------------

def _committed(tmp_path: Path) -> Path:
    root = tmp_path / "leaderboard"
    write_prices(root)
    src = tmp_path / "raw"
    for task in ("alpha", "beta"):
        for p in toy_suite(src, n=40, task=task):
            export_run(p, root / "runs")
    (root / "notes.md").write_text("Paper claims: not checked on toy data.\n")
    return root


def test_leaderboard_is_deterministic_and_complete(tmp_path: Path) -> None:
    root = _committed(tmp_path)
    md_path = write_leaderboard(root, B=300)
    first = {p: p.read_bytes() for p in [md_path, *sorted((root / "plots").glob("*.png"))]}
    shutil.rmtree(root / "plots")
    write_leaderboard(root, B=300)
    second = {p: p.read_bytes() for p in [md_path, *sorted((root / "plots").glob("*.png"))]}
    assert first == second and len(first) == 3
    md = md_path.read_text()
    assert "2-core test box" in md and "2026-01-01" in md and "Test prices." in md
    assert "## alpha" in md and "## beta" in md and "plots/alpha.png" in md
    assert "Paper claims" in md
    assert md.count("| shepherd(hint_tokens=") == 6
    assert str(tmp_path) not in md  # no machine-specific paths


def test_export_run_is_compact_and_loadable(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path))
    src = write_run(tmp_path / "raw", "r", "llm", {}, [True, None, False], [5, 6, 7])
    dest = export_run(src, tmp_path / "runs")
    rec = json.loads((dest / "samples.jsonl").read_text().splitlines()[0])
    assert "latency_s" not in rec["calls"][0] and "answer" not in rec
    a, b = load_run(src, prices).samples, load_run(dest, prices).samples
    assert a["cost_usd"].tolist() == b["cost_usd"].tolist()
    assert a["correct"].isna().tolist() == b["correct"].isna().tolist()


def test_report_states_error_policy_and_handles_a_single_run(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path))
    d = write_run(tmp_path / "runs", "r", "shepherd", {"hint_tokens": 8}, [True, None, False, True], [8] * 4)
    wrong = json.loads(build_report([d], fmt="json", B=100, prices=prices))
    excl = json.loads(build_report([d], fmt="json", B=100, prices=prices, error_policy="exclude"))
    (rw,), (re_,) = wrong["tasks"][0]["strategies"], excl["tasks"][0]["strategies"]
    assert rw["errors"] == re_["errors"] == 1
    assert rw["accuracy"] == pytest.approx(0.5) and re_["accuracy"] == pytest.approx(2 / 3)
    assert rw["cost_reduction"] is None and wrong["tasks"][0]["sweeps"] == []
    md = build_report([d], fmt="md", B=100, prices=prices, error_policy="exclude")
    assert "errors (failed calls) are excluded" in md


def test_leaderboard_shows_one_operating_point_per_long_sweep(tmp_path: Path) -> None:
    """A threshold sweep appears once in the table: its cheapest point at or above 95% of LLM-only
    accuracy (computed here by hand), marked "(1 of 7)"; the 3-point hint sweep stays whole."""
    root = tmp_path / "lb"
    write_prices(root)
    src = tmp_path / "raw"
    n = 40
    toy_suite(src, n=n, task="gamma")
    llm_ok = [bool(json.loads(line)["correct"]) for line in (src / "gamma-llm" / "samples.jsonl").read_text().splitlines()]
    target = 0.95 * sum(llm_ok) / n
    points = {}
    for j, thr in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)):
        to_llm = [i % 7 < 7 - j for i in range(n)]  # higher threshold -> fewer queries to the LLM
        correct = [ok if big else False for ok, big in zip(llm_ok, to_llm, strict=True)]
        write_run(src, f"gamma-cas{thr}", "cascade-x", {"threshold": thr}, correct,
                  [300 if big else 0 for big in to_llm], task="gamma", kind="cascade")
        points[thr] = (sum(correct) / n, sum(to_llm))
    for p in sorted(src.iterdir()):
        export_run(p, root / "runs")
    md = write_leaderboard(root, B=200, plots=False).read_text()
    expected = min((t for t, (acc, cost) in points.items() if acc >= target - 1e-12), key=lambda t: points[t][1])
    rows = [line for line in md.splitlines() if line.startswith("| cascade-x(")]
    assert len(rows) == 1 and f"cascade-x(threshold={expected:g}) (1 of 7)" in rows[0]
    assert md.count("| shepherd(hint_tokens=") == 3
    assert md.count("| route(threshold=") == 1 and "(1 of 2)" in md  # short threshold sweeps too


def test_answer_sanity_shares_from_hand_made_samples() -> None:
    import pandas as pd

    from shepherd_bench.analysis.runs import Run, sample_frame

    def call(role: str, purpose: str, out: int, finish: str = "stop", error: str | None = None) -> dict[str, Any]:
        return {"role": role, "purpose": purpose, "input_tokens": 50, "output_tokens": out,
                "finish_reason": finish, "error": error}

    records = [
        # a format failure: 6 tokens, answered, wrong
        {"query_id": "a", "correct": False, "status": "fail", "calls": [call("small", "answer", 6)]},
        # 12-token hint + 200-token continuation: 212 tokens, not short; cut at max_tokens
        {"query_id": "b", "correct": True, "status": "pass", "decision": {"hint_tokens": 12},
         "calls": [call("large", "hint", 12, "length"), call("small", "continue", 200, "length")]},
        # 5-token hint + 4-token continuation: 9 tokens, short
        {"query_id": "c", "correct": False, "status": "no_answer", "decision": {"hint_tokens": 5},
         "calls": [call("large", "hint", 5, "length"), call("small", "continue", 4)]},
        # a failed call: an error, left out of every share
        {"query_id": "d", "correct": None, "status": "error", "error": "boom",
         "calls": [call("small", "answer", 0, "", "boom")]},
    ]
    free = load_prices().get("free")
    df = sample_frame(records, free, free)
    assert list(df["answer_tokens"].iloc[:3]) == [6, 212, 9]
    run = Run(path=Path("x"), manifest={}, summary={}, samples=df)
    s = run.sanity()
    assert s["n"] == 3
    assert s["short"] == pytest.approx(2 / 3)
    assert s["cut"] == pytest.approx(1 / 3)
    assert s["no_answer"] == pytest.approx(1 / 3)
    # an older run with no finish reasons: the cut share is unknown, never 0
    old = sample_frame([{**records[0], "calls": [{**records[0]["calls"][0], "finish_reason": ""}]}], free, free)
    assert pd.isna(Run(path=Path("x"), manifest={}, summary={}, samples=old).sanity()["cut"])


def test_labels_show_non_default_and_varying_parameters_only() -> None:
    import pandas as pd

    from shepherd_bench.analysis.runs import Run, unique_names
    from shepherd_bench.strategies import get_strategy

    defaults = {p.name: p.default for p in get_strategy("shepherd").params}  # what a live run records

    def run(**changed: Any) -> Run:
        params = {**defaults, **changed}
        return Run(path=Path("r"), manifest={"strategy": {"strategy": "shepherd", "params": params}},
                   summary={}, samples=pd.DataFrame())

    assert run(hint_tokens=16).label == "shepherd(hint_tokens=16)"
    assert run().label == "shepherd"
    # shown together, the varying parameter is named on every run, the default value included
    assert unique_names([run(hint_tokens=16), run(), run(hint_tokens=64)]) == [
        "shepherd(hint_tokens=16)", "shepherd(hint_tokens=32)", "shepherd(hint_tokens=64)"]


def test_matched_cost_without_llm_only_says_what_is_missing(tmp_path: Path) -> None:
    prices = load_prices(write_prices(tmp_path / "p"))
    paths = [p for p in toy_suite(tmp_path / "runs") if load_run(p, prices).strategy != "llm"]
    md = build_report(paths, target=0.95, fmt="md", B=100, seed=0, prices=prices)
    assert "needs an LLM-only run (`--strategy llm`)" in md and "not reached" not in md.split("### Cost")[1]
