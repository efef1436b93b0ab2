"""Reports over run folders: markdown (tabulate), csv, json, and accuracy-cost PNG plots.

Entry point for ``shepherd-bench report``: :func:`build_report`. Everything here is a pure function of
the run folders, the price table and the bootstrap settings: the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from ..prices import PriceTable, load_prices
from .bootstrap import DEFAULT_B, BootstrapResult, Interval, paired_bootstrap
from .matched import (
    AIQResult,
    MatchedCost,
    Target,
    ace,
    aiq_bootstrap,
    apgr,
    cost_fraction,
    cost_ratio,
    cost_reduction,
    cpt,
    matched_cost,
    pgr,
    savings_ratio,
    upper_hull,
)
from .runs import (
    LLM_STRATEGY,
    SHORT_ANSWER_TOKENS,
    SLM_STRATEGY,
    AlignedRuns,
    Run,
    align_runs,
    find_sweeps,
    format_params,
    group_by_task,
    load_run,
    shown_params,
)

FORMATS = ("md", "csv", "json")
PER_1K = 1000.0


@dataclass(frozen=True)
class Settings:
    target: Target
    B: int = DEFAULT_B
    seed: int = 0
    level: float = 0.95
    error_policy: str = "wrong"
    mode: str = "concave"


@dataclass
class SweepResult:
    label: str
    names: list[str]  # member runs (columns of the aligned arrays), ordered by cost
    matched: MatchedCost | None  # None without an LLM-only run
    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    aiq: AIQResult | None = None


@dataclass
class TaskAnalysis:
    task: str
    aligned: AlignedRuns
    boot: BootstrapResult
    settings: Settings
    llm: str | None  # name of the LLM-only column
    slm: str | None
    sweeps: list[SweepResult]

    def sweep_of(self, name: str) -> SweepResult | None:
        return next((s for s in self.sweeps if name in s.names), None)


# --- analysis ----------------------------------------------------------------------------------------

def _reference(aligned: AlignedRuns, strategy: str) -> str | None:
    cols = [nm for nm, r in zip(aligned.names, aligned.runs, strict=True) if r.strategy == strategy]
    return sorted(cols)[0] if cols else None


def _sweep_label(runs: Sequence[Run]) -> str:
    """``strategy(fixed non-default parameters) over the parameters that vary``."""
    r = runs[0]
    fixed = {k: v for k, v in shown_params(r.strategy, r.params).items()
             if isinstance(v, bool) or not isinstance(v, (int, float))}
    swept = sorted({k for x in runs for k, v in x.params.items() if k not in fixed
                    and len({repr(y.params.get(k)) for y in runs}) > 1})
    base = f"{r.strategy}({format_params(fixed)})" if fixed else r.strategy
    return f"{base} over {', '.join(swept)}" if swept else base


def _analyse_sweep(a: TaskAnalysis, members: list[Run]) -> SweepResult:
    al, s = a.aligned, a.settings
    cols = [al.names[al.runs.index(r)] for r in members]
    idx = [al.column(c) for c in cols]
    idx.sort(key=lambda j: (float(np.mean(al.cost[:, j])), al.names[j]))
    cols = [al.names[j] for j in idx]
    res = SweepResult(label=_sweep_label(members), names=cols, matched=None, apgr=None, cpt50=None, cpt80=None)
    if a.llm is None or (s.target.needs_slm and a.slm is None):
        return res
    li = al.column(a.llm)
    si = al.column(a.slm) if a.slm is not None else None
    res.matched = matched_cost(
        al.correct[:, idx], al.cost[:, idx], al.correct[:, li], al.cost[:, li], s.target,
        slm_correct=None if si is None else al.correct[:, si], B=s.B, seed=s.seed, level=s.level,
        mode=s.mode, error_policy=s.error_policy)
    if si is not None:
        acc = [a.boot.stats(c).accuracy.estimate for c in cols]
        cst = [a.boot.stats(c).cost.estimate for c in cols]
        a_s, a_l = a.boot.stats(a.slm or "").accuracy.estimate, a.boot.stats(a.llm).accuracy.estimate
        c_s, c_l = a.boot.stats(a.slm or "").cost.estimate, a.boot.stats(a.llm).cost.estimate
        if a_l != a_s and c_l != c_s:
            x, g = cost_fraction(cst, c_s, c_l), pgr(acc, a_s, a_l)
            res.apgr = apgr(x, g, s.mode)
            res.cpt50, res.cpt80 = cpt(x, g, 0.5, s.mode), cpt(x, g, 0.8, s.mode)
        res.aiq = aiq_bootstrap(al.correct[:, idx], al.cost[:, idx], (al.correct[:, si], al.cost[:, si]),
                                (al.correct[:, li], al.cost[:, li]), B=s.B, seed=s.seed, level=s.level,
                                mode=s.mode, error_policy=s.error_policy)
    return res


def analyse_task(runs: Sequence[Run], settings: Settings) -> TaskAnalysis:
    """Paired bootstrap of every run of one task, plus cost at matched accuracy for each sweep."""
    aligned = align_runs(runs)
    llm, slm = _reference(aligned, LLM_STRATEGY), _reference(aligned, SLM_STRATEGY)
    ref = llm or aligned.names[0]
    pairs = [(nm, ref) for nm in aligned.names if nm != ref]
    boot = paired_bootstrap(aligned.correct, aligned.cost, aligned.names, B=settings.B, seed=settings.seed,
                            level=settings.level, error_policy=settings.error_policy, pairs=pairs)
    a = TaskAnalysis(task=runs[0].task, aligned=aligned, boot=boot, settings=settings, llm=llm, slm=slm,
                     sweeps=[])
    a.sweeps = [_analyse_sweep(a, members) for members in find_sweeps(aligned.runs).values()]
    return a


def analyse(runs: Sequence[Run], settings: Settings) -> list[TaskAnalysis]:
    return [analyse_task(rs, settings) for rs in group_by_task(runs).values()]


# --- table rows (plain numbers) ----------------------------------------------------------------------

def strategy_rows(a: TaskAnalysis) -> list[dict[str, Any]]:
    """One dict per run: raw numbers (accuracy as a fraction, cost in USD per 1k queries)."""
    al, rows = a.aligned, []
    ref = a.llm or al.names[0]
    refs = {k: a.boot.stats(v) for k, v in (("l", a.llm), ("s", a.slm)) if v is not None}
    for j, (nm, run) in enumerate(zip(al.names, al.runs, strict=True)):
        st = a.boot.stats(nm)
        diff = a.boot.difference(nm, ref) if nm != ref else None
        row: dict[str, Any] = {
            "task": a.task, "strategy": nm, "slm": run.slm, "llm": run.llm, "n": st.n,
            "errors": st.n_errors, "accuracy": st.accuracy.estimate, "accuracy_low": st.accuracy.low,
            "accuracy_high": st.accuracy.high,
            "d_accuracy": diff.accuracy.estimate if diff else None,
            "d_accuracy_low": diff.accuracy.low if diff else None,
            "d_accuracy_high": diff.accuracy.high if diff else None,
            "d_accuracy_significant": diff.accuracy_significant if diff else None,
            "llm_tokens_per_query": float(np.mean(al.llm_input_tokens[:, j] + al.llm_output_tokens[:, j])),
            "usd_per_1k": st.cost.estimate * PER_1K, "usd_per_1k_low": st.cost.low * PER_1K,
            "usd_per_1k_high": st.cost.high * PER_1K,
            "cost_reduction": cost_reduction(st.cost.estimate, refs["l"].cost.estimate) if "l" in refs else None,
            "ace": None, "date": run.date, "harness_version": run.harness_version,
            "grid_sha256": run.grid_sha256,
            **{f"{k}_share": v for k, v in run.sanity().items() if k != "n"},
        }
        if "l" in refs and "s" in refs and nm not in (a.llm, a.slm):
            l_, s_ = refs["l"], refs["s"]
            row["ace"] = ace(st.accuracy.estimate, st.cost.estimate, s_.accuracy.estimate, s_.cost.estimate,
                             l_.accuracy.estimate, l_.cost.estimate)
        rows.append(row)
    return rows


def sweep_rows(a: TaskAnalysis) -> list[dict[str, Any]]:
    rows = []
    for s in a.sweeps:
        m = s.matched
        rows.append({
            "task": a.task, "sweep": s.label, "points": len(s.names),
            "target": m.target if m else None, "target_accuracy": m.target_accuracy if m else None,
            "usd_per_1k_at_target": None if m is None or m.cost is None else m.cost * PER_1K,
            "usd_per_1k_at_target_low": None if m is None or m.low is None else m.low * PER_1K,
            "usd_per_1k_at_target_high": None if m is None or m.high is None else m.high * PER_1K,
            "not_reached_fraction": m.not_reached_fraction if m else None,
            "reduction": m.reduction if m else None, "reduction_low": m.reduction_low if m else None,
            "reduction_high": m.reduction_high if m else None,
            "apgr": s.apgr, "cpt50": s.cpt50, "cpt80": s.cpt80,
            "aiq": s.aiq.estimate if s.aiq else None, "aiq_low": s.aiq.low if s.aiq else None,
            "aiq_high": s.aiq.high if s.aiq else None,
        })
    return rows


def comparison_rows(a: TaskAnalysis) -> list[dict[str, Any]]:
    """Between every two sweeps reaching the target: ratio of absolute costs and ratio of savings."""
    rows = []
    done = [s for s in a.sweeps if s.matched is not None and s.matched.cost is not None]
    for i, x in enumerate(done):
        for y in done[i + 1:]:
            mx, my = x.matched, y.matched
            assert mx is not None and my is not None and mx.cost is not None and my.cost is not None
            rows.append({"task": a.task, "a": x.label, "b": y.label,
                         "cost_ratio": cost_ratio(mx.cost, my.cost),
                         "savings_ratio": savings_ratio(mx.cost, my.cost, mx.llm_cost)})
    return rows


# --- formatting --------------------------------------------------------------------------------------

def fmt_pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


def fmt_ci_pct(est: float | None, lo: float | None, hi: float | None, missing: str = "–") -> str:
    if est is None:
        return missing
    return (f"{100 * est:.1f}% [{missing if lo is None else f'{100 * lo:.1f}'}, "
            f"{missing if hi is None else f'{100 * hi:.1f}'}]")


def fmt_usd(v: float | None) -> str:
    return "not reached" if v is None else f"${v:.3f}"


def fmt_ci_usd(est: float | None, lo: float | None, hi: float | None) -> str:
    if est is None:
        return "not reached"
    return f"${est:.3f} [{'–' if lo is None else f'{lo:.3f}'}, {'not reached' if hi is None else f'{hi:.3f}'}]"


def fmt_num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_diff(row: dict[str, Any]) -> str:
    if row["d_accuracy"] is None:
        return "(reference)"
    lo, hi = row["d_accuracy_low"], row["d_accuracy_high"]
    sig = "" if row["d_accuracy_significant"] else " n.s."
    return f"{100 * row['d_accuracy']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}]{sig}"


def settings_note(a: TaskAnalysis, prices: PriceTable) -> str:
    s = a.settings
    return (f"Paired bootstrap over queries: B={s.B}, seed {s.seed}, {s.level:.0%} percentile intervals; "
            f"{a.boot.policy_note()}. {a.aligned.note}. Costs from the price table dated {prices.date} "
            f"({Path(prices.source).name}), computed from the recorded token counts. "
            f"Matched accuracy uses the {s.mode} frontier ({'mixing two sweep points allowed' if s.mode == 'concave' else 'measured points only'}); "
            f"never extrapolated.")


def sanity_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The answer-shape table: a format failure shows here even when it hides inside an accuracy."""
    table = [[r["strategy"], fmt_pct(r["short_share"]), fmt_pct(r["cut_share"]), fmt_pct(r["no_answer_share"])]
             for r in rows]
    head = ["strategy", f"answers < {SHORT_ANSWER_TOKENS} output tokens", "cut at max_tokens",
            "no extractable answer"]
    return ["### Answer sanity", "",
            tabulate(table, headers=head, tablefmt="github", disable_numparse=True), "",
            "Shares of graded samples; the answer is the last successful call's output (a continuation "
            "counts its hint). \"–\": the run recorded no finish reasons.", ""]


def task_markdown(a: TaskAnalysis, prices: PriceTable) -> str:
    ref = "LLM-only" if a.llm else a.aligned.names[0]
    rows = strategy_rows(a)
    table = [[r["strategy"], r["slm"], r["llm"], r["n"], r["errors"],
              fmt_ci_pct(r["accuracy"], r["accuracy_low"], r["accuracy_high"]), fmt_diff(r),
              fmt_num(r["llm_tokens_per_query"], 1),
              fmt_ci_usd(r["usd_per_1k"], r["usd_per_1k_low"], r["usd_per_1k_high"]),
              fmt_pct(r["cost_reduction"]), fmt_num(r["ace"])] for r in rows]
    head = ["strategy", "SLM", "LLM", "n", "errors", f"accuracy [{a.settings.level:.0%} CI]",
            f"Δ accuracy vs {ref} [CI]", "LLM tokens / query", "$ / 1k queries [CI]",
            "cost reduction vs LLM-only", "ACE"]
    out = [f"## {a.task}", "", settings_note(a, prices), "",
           tabulate(table, headers=head, tablefmt="github", disable_numparse=True), ""]
    out += sanity_markdown(rows)
    srows = sweep_rows(a)
    missing = [w for w, have in (("an LLM-only run (`--strategy llm`)", a.llm is not None),
                                 ("an SLM-only run (`--strategy slm`)",
                                  a.slm is not None or not a.settings.target.needs_slm)) if not have]
    if srows and missing:
        out += [f"### Cost at matched accuracy (target: {a.settings.target.label})", "",
                f"Not computed: the target needs {' and '.join(missing)} of the same task and queries "
                f"among the reported folders.", ""]
        srows = []
    if srows:
        tgt = a.settings.target.label
        out += [f"### Cost at matched accuracy (target: {tgt})", ""]
        st = [[r["sweep"], r["points"], fmt_pct(r["target_accuracy"]),
               fmt_ci_usd(r["usd_per_1k_at_target"], r["usd_per_1k_at_target_low"], r["usd_per_1k_at_target_high"]),
               fmt_pct(r["not_reached_fraction"]), fmt_ci_pct(r["reduction"], r["reduction_low"], r["reduction_high"], "not reached"),
               fmt_num(r["apgr"], 3), fmt_pct(r["cpt50"]), fmt_pct(r["cpt80"]),
               fmt_ci_pct(r["aiq"], r["aiq_low"], r["aiq_high"])] for r in srows]
        out += [tabulate(st, headers=["sweep", "points", "target accuracy", "$ / 1k at target [CI]",
                                      "not reached (resamples)", "cost reduction vs LLM-only [CI]",
                                      "APGR", "CPT(50%)", "CPT(80%)", "AIQ [CI]"],
                         tablefmt="github", disable_numparse=True), ""]
        out += ["APGR and CPT use the cost axis (C - C_SLM) / (C_LLM - C_SLM) with SLM-only and LLM-only "
                "as the end points; CPT is the cost fraction needed to recover 50% / 80% of the "
                "SLM-LLM accuracy gap. AIQ (RouterBench) is the area under the sweep's non-decreasing "
                "convex hull of accuracy vs cost, SLM-only and LLM-only included, over [C_SLM, C_LLM], "
                "divided by that range: an accuracy averaged over budgets.", ""]
    crows = comparison_rows(a)
    if crows:
        ct = [[r["a"], r["b"], fmt_num(r["cost_ratio"]), fmt_num(r["savings_ratio"])] for r in crows]
        out += ["### Between sweeps at matched accuracy", "",
                tabulate(ct, headers=["A", "B", "cost ratio A / B", "savings ratio (A vs B, savings vs LLM-only)"],
                         tablefmt="github", disable_numparse=True), ""]
    return "\n".join(out)


def render(analyses: Sequence[TaskAnalysis], fmt: str, prices: PriceTable) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt == "md":
        return "\n".join(task_markdown(a, prices) for a in analyses).rstrip() + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        pd.DataFrame([r for a in analyses for r in strategy_rows(a)]).to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()
    doc: dict[str, Any] = {"prices": {"date": prices.date, "table": Path(prices.source).name},
           "tasks": [{"task": a.task, "settings": {**a.settings.__dict__, "target": a.settings.target.label},
                      "pairing": a.aligned.note, "bootstrap": a.boot.to_json(),
                      "strategies": strategy_rows(a), "sweeps": sweep_rows(a),
                      "comparisons": comparison_rows(a)} for a in analyses]}
    return json.dumps(doc, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# --- plots -------------------------------------------------------------------------------------------

def plot_task(a: TaskAnalysis, out: Path) -> Path:
    """Accuracy vs $ / 1k queries for every run of one task, LLM-only and SLM-only marked. A single run
    gets CI error bars; a sweep gets its points as small markers, joined along its frontier, with a band
    through the accuracy CIs of the frontier's vertices (per-point bars on a 20-point sweep bury the
    plot). Deterministic PNG bytes."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.hashsalt"] = "shepherd-bench"
    fig = Figure(figsize=(10.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    boot, sweeps = a.boot, {nm: s for s in a.sweeps for nm in s.names}
    colors = {s.label: f"C{i % 10}" for i, s in enumerate(a.sweeps)}
    singles = [nm for nm in a.aligned.names if nm not in sweeps and nm not in (a.llm, a.slm)]
    colors.update({nm: f"C{(len(a.sweeps) + i) % 10}" for i, nm in enumerate(singles)})
    for nm in a.aligned.names:
        st = boot.stats(nm)
        x, y = st.cost.estimate * PER_1K, st.accuracy.estimate * 100
        if nm in sweeps:
            ax.plot(x, y, "o", ms=3, alpha=0.7, color=colors[sweeps[nm].label])
            continue
        # clip: a degenerate interval can sit a rounding error inside its estimate
        xerr = [[max(x - st.cost.low * PER_1K, 0.0)], [max(st.cost.high * PER_1K - x, 0.0)]]
        yerr = [[max(y - st.accuracy.low * 100, 0.0)], [max(st.accuracy.high * 100 - y, 0.0)]]
        marker = {a.llm: "s", a.slm: "D"}.get(nm, "o")
        color = "black" if nm in (a.llm, a.slm) else colors[nm]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, color=color, capsize=3, ms=6, label=nm)
    for s in a.sweeps:
        stats = [boot.stats(c) for c in s.names]
        acc = np.array([st.accuracy.estimate * 100 for st in stats])
        cst = np.array([st.cost.estimate * PER_1K for st in stats])
        h = upper_hull(acc, cst, a.settings.mode)
        ax.plot(cst[h], acc[h], "-", lw=1.5, color=colors[s.label], label=f"{s.label} (frontier)")
        if len(h) > 1:
            ax.fill_between(cst[h], [stats[i].accuracy.low * 100 for i in h],
                            [stats[i].accuracy.high * 100 for i in h], color=colors[s.label], alpha=0.08, lw=0)
    for ref, ls, lab in ((a.llm, "--", "LLM-only"), (a.slm, ":", "SLM-only")):
        if ref is not None:
            ax.axhline(boot.stats(ref).accuracy.estimate * 100, color="grey", ls=ls, lw=1, label=lab)
    ax.set_xlabel("$ per 1k queries (LLM tokens priced; SLM as in the price table)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{a.task}: accuracy vs cost ({a.settings.level:.0%} CI, n={len(a.aligned.query_ids)})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside, not over, the points
    out.parent.mkdir(parents=True, exist_ok=True)
    # the bounding box grows to hold the legend beside the axes (tight_layout cannot, and warns)
    fig.savefig(out, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    return out


def plot_paths(plot: Path, tasks: Sequence[str]) -> dict[str, Path]:
    """``plot`` itself for one task; ``<stem>-<task><suffix>`` beside it for several."""
    if len(tasks) == 1:
        return {tasks[0]: plot}
    return {t: plot.with_name(f"{plot.stem}-{t}{plot.suffix or '.png'}") for t in tasks}


# --- entry point -------------------------------------------------------------------------------------

def build_report(paths: Sequence[Path], target: float | str = 0.95, fmt: str = "md", plot: Path | None = None,
                 B: int = DEFAULT_B, seed: int = 0, *, error_policy: str = "wrong", mode: str = "concave",
                 prices: PriceTable | None = None) -> str:
    """``shepherd-bench report``: load run folders, analyse each task, render md / csv / json, and
    write one accuracy-cost PNG per task when ``plot`` is given.

    ``target``: a fraction of LLM-only accuracy (0.95), ``"llm"``, or ``"gap:0.8"``.
    """
    table = prices or load_prices()
    runs = [load_run(Path(p), table) for p in paths]
    analyses = analyse(runs, Settings(target=Target.parse(target), B=B, seed=seed,
                                      error_policy=error_policy, mode=mode))
    if plot is not None:
        for a, out in zip(analyses, plot_paths(Path(plot), [a.task for a in analyses]).values(), strict=True):
            plot_task(a, out)
    return render(analyses, fmt, table)


def interval_str(iv: Interval, scale: float = 1.0, digits: int = 3) -> str:
    return f"{iv.estimate * scale:.{digits}f} [{iv.low * scale:.{digits}f}, {iv.high * scale:.{digits}f}]"
