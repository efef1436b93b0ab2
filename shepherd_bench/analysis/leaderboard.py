"""``leaderboard/LEADERBOARD.md`` (and its PNGs), regenerated from committed files only.

Committed layout (everything the bootstrap needs: per-query correctness and the token counts the
cost is computed from, priced with the committed table)::

    leaderboard/
      prices.json                    the dated price table
      hardware.json                  optional: {"description": "..."} (else the manifests' "hardware")
      notes.md                       optional: prose appended verbatim (e.g. what the paper claims)
      runs/<name>/manifest.json      the run's manifest
      runs/<name>/summary.json       the run's summary
      runs/<name>/samples.jsonl      compact samples (see :func:`export_run`)
      LEADERBOARD.md, plots/<task>.png   generated

Same input -> same bytes: no render-time timestamps, sorted inputs, fixed seeds, PNG metadata fixed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..prices import PriceTable, load_prices
from .matched import Target
from .report import (
    PER_1K,
    Settings,
    TaskAnalysis,
    analyse,
    fmt_ci_pct,
    fmt_ci_usd,
    fmt_num,
    fmt_pct,
    plot_task,
    strategy_rows,
)
from .runs import LLM_STRATEGY, SLM_STRATEGY, Run, load_run, read_samples

LEADERBOARD_B = 10_000
LEADERBOARD_TARGET = Target("llm_fraction", 0.95)
SAMPLE_KEYS = ("query_id", "index", "correct", "status", "error", "decision")
CALL_KEYS = ("role", "input_tokens", "cached_input_tokens", "output_tokens", "cached", "error", "purpose")


def export_run(src: Path, runs_dir: Path, name: str | None = None) -> Path:
    """Copy a run folder into ``runs_dir/<name>`` in the compact committed form: manifest and summary
    as they are, samples sorted by index with answers and latencies dropped (correctness, status,
    decision and each call's role and token counts kept)."""
    src = Path(src)
    dest = Path(runs_dir) / (name or src.name)
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("manifest.json", "summary.json"):
        shutil.copyfile(src / f, dest / f)
    recs = sorted(read_samples(src / "samples.jsonl"), key=lambda r: (int(r.get("index", 0)), str(r["query_id"])))
    lines = []
    for r in recs:
        slim: dict[str, Any] = {k: r.get(k) for k in SAMPLE_KEYS}
        slim["calls"] = [{k: c.get(k) for k in CALL_KEYS} for c in r.get("calls", [])]
        lines.append(json.dumps(slim, sort_keys=True, separators=(",", ":")))
    (dest / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return dest


def _row_order(run: Run) -> tuple[int, str, float, str]:
    rank = {SLM_STRATEGY: 0, LLM_STRATEGY: 1}.get(run.strategy, 2)
    return (rank, run.strategy, float(run.samples["cost_usd"].mean()), run.path.name)


def committed_runs(root: Path, prices: PriceTable) -> list[Run]:
    """Runs under ``root/runs``: SLM-only, LLM-only, then by strategy and mean cost."""
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        return []
    runs = [load_run(p, prices) for p in sorted(runs_dir.iterdir()) if (p / "manifest.json").exists()]
    return sorted(runs, key=_row_order)


def hardware_note(root: Path, runs: Sequence[Run]) -> str:
    hw = root / "hardware.json"
    if hw.exists():
        return str(json.loads(hw.read_text()).get("description", "")).strip() or "not recorded"
    seen = sorted({json.dumps(r.manifest["hardware"], sort_keys=True) if not isinstance(r.manifest["hardware"], str)
                   else r.manifest["hardware"] for r in runs if r.manifest.get("hardware")})
    return "; ".join(seen) if seen else "not recorded"


def _prices_note(root: Path, prices: PriceTable) -> str:
    raw = json.loads((root / "prices.json").read_text()) if (root / "prices.json").exists() else {}
    notes = str(raw.get("notes", "")).strip()
    return f"table dated {prices.date} (`prices.json`, USD per 1M tokens)" + (f". {notes}" if notes else "")


COLLAPSED_PARAM = "threshold"
"""A sweep over this parameter shows one operating point in the table (hint-size sweeps show every size)."""


def operating_points(a: TaskAnalysis, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The table's rows: every run, except that a threshold sweep keeps only its operating point, the
    cheapest point at or above the matched-accuracy target (the most accurate point, cheapest among
    ties, where none reaches it). Returns the rows and, per kept operating point, the size of its sweep."""
    drop: set[str] = set()
    size: dict[str, int] = {}
    by_name = {r["strategy"]: r for r in rows}
    params = {nm: run.params for nm, run in zip(a.aligned.names, a.aligned.runs, strict=True)}
    for sw in a.sweeps:
        members = [by_name[n] for n in sw.names if n in by_name]
        if len({repr(params[r["strategy"]].get(COLLAPSED_PARAM)) for r in members}) < 2:
            continue
        target = sw.matched.target_accuracy if sw.matched is not None else None
        reach = [r for r in members if target is not None and r["accuracy"] >= target - 1e-12]
        pick = min(reach, key=lambda r: (r["usd_per_1k"], r["strategy"])) if reach else \
            min(members, key=lambda r: (-r["accuracy"], r["usd_per_1k"], r["strategy"]))
        size[pick["strategy"]] = len(members)
        drop.update(r["strategy"] for r in members if r is not pick)
    return [r for r in rows if r["strategy"] not in drop], size


def leaderboard_rows(a: TaskAnalysis) -> list[list[str]]:
    out = []
    rows, sweep_size = operating_points(a, strategy_rows(a))
    for r in rows:
        sweep = a.sweep_of(r["strategy"])
        m = sweep.matched if sweep else None
        matched = "–" if m is None else fmt_ci_usd(
            None if m.cost is None else m.cost * PER_1K, None if m.low is None else m.low * PER_1K,
            None if m.high is None else m.high * PER_1K)
        if m is not None and m.reduction is not None:
            matched += f" ({fmt_pct(m.reduction)} saved)"
        name = r["strategy"] + (f" (1 of {sweep_size[r['strategy']]})" if r["strategy"] in sweep_size else "")
        out.append([name, r["slm"], r["llm"], fmt_ci_pct(r["accuracy"], r["accuracy_low"], r["accuracy_high"]),
                    fmt_num(r["llm_tokens_per_query"], 1),
                    fmt_ci_usd(r["usd_per_1k"], r["usd_per_1k_low"], r["usd_per_1k_high"]),
                    matched, fmt_pct(r["cost_reduction"]), str(r["n"]), r["date"], r["harness_version"]])
    return out


HEADERS = ["strategy", "SLM", "LLM", "accuracy [95% CI]", "LLM tokens / query", "$ / 1k queries [95% CI]",
           "$ / 1k at matched accuracy [95% CI]", "cost reduction vs LLM-only", "n", "date", "harness"]


def render_leaderboard(root: Path, analyses: Sequence[TaskAnalysis], prices: PriceTable, runs: Sequence[Run],
                       plots: dict[str, str]) -> str:
    s = analyses[0].settings if analyses else Settings(target=LEADERBOARD_TARGET, B=LEADERBOARD_B)
    lines = [
        "# shepherd-bench leaderboard", "",
        "Generated by `shepherd-bench leaderboard` from the committed runs under `leaderboard/runs/`; "
        "do not edit by hand (CI regenerates it and fails on any difference).", "",
        f"- **Hardware:** {hardware_note(root, runs)}",
        f"- **Prices:** {_prices_note(root, prices)}",
        f"- **Statistics:** paired bootstrap over queries (B={s.B}, seed {s.seed}, 95% percentile intervals); "
        f"errors (failed calls) count as incorrect. Cost at matched accuracy: the cost at "
        f"{s.target.label} on the sweep's {s.mode} frontier, bootstrapped through the whole pipeline; "
        f"\"not reached\" rather than extrapolated; the same for every run of one sweep, with the "
        f"saving vs LLM-only in parentheses. Cost reduction: the run's own cost vs LLM-only. A threshold "
        f"sweep shows one operating point, marked \"(1 of N)\": its cheapest point at or above the target "
        f"accuracy, else its most accurate; the plot shows every point.",
        "",
    ]
    if not analyses:
        lines += ["No committed runs yet.", ""]
    for a in analyses:
        lines += [f"## {a.task}", "", f"n = {len(a.aligned.query_ids)}. {a.aligned.note}.", ""]
        if a.task in plots:
            lines += [f"![{a.task}: accuracy vs cost]({plots[a.task]})", ""]
        lines += [tabulate(leaderboard_rows(a), headers=HEADERS, tablefmt="github", disable_numparse=True), ""]
    notes = root / "notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_leaderboard(root: Path, *, B: int = LEADERBOARD_B, seed: int = 0, plots: bool = True) -> Path:
    """``shepherd-bench leaderboard``: regenerate ``root/LEADERBOARD.md`` and ``root/plots/<task>.png``
    from ``root`` alone; returns the markdown path."""
    root = Path(root)
    prices = load_prices(root / "prices.json")
    runs = committed_runs(root, prices)
    analyses = analyse(runs, Settings(target=LEADERBOARD_TARGET, B=B, seed=seed))
    rel: dict[str, str] = {}
    if plots:
        for a in analyses:
            plot_task(a, root / "plots" / f"{a.task}.png")
            rel[a.task] = f"plots/{a.task}.png"
    out = root / "LEADERBOARD.md"
    out.write_text(render_leaderboard(root, analyses, prices, runs, rel))
    return out
