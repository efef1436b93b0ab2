"""``leaderboard/LEADERBOARD.md``, the replay reports and the plots, regenerated from committed files only.

Committed layout::

    leaderboard/
      leaderboard.yaml               what to replay: tasks, policies, target, resamples (``load_config``)
      grids/<task>/                  the published hint grids (docs/GRIDS.md): the one source of the rows
      prices.json                    the dated price table
      hardware.json                  optional: {"description": "..."} (else the manifests' "hardware")
      notes.md                       optional: prose appended verbatim (e.g. what the paper claims)
      runs/<name>/                   optional: live runs, in the compact form of :func:`export_run`
      LEADERBOARD.md, replay-<task>.md, plots/<task>.png   generated

Every policy of ``leaderboard.yaml`` (and every registered router implementing the replay protocol) is
replayed on each task's grid (``shepherd_bench.research.replay``), exported as run folders in a scratch
directory and analysed like live runs; each row states the sha256 of the grid file it came from.
Same input -> same bytes: no render-time timestamps, sorted inputs, fixed seeds, PNG metadata fixed.

Figures quoted in prose stay in step with the grids through *generated blocks*: in ``notes.md`` and in
the project's ``README.md`` (``root/../README.md``), the text between ``<!-- begin generated: NAME -->``
and ``<!-- end generated -->`` is rewritten on every run, ``results:<task>`` with the task's table
(strategy, accuracy, cost, cost at matched accuracy) and ``claims:<task>`` with the paper's claims
(``fill_generated``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..errors import UserError
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
LEADERBOARD_TARGET = Target("llm_fraction", 0.95)  # without a leaderboard.yaml
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


CONFIG_FILE = "leaderboard.yaml"


class LeaderboardError(UserError, ValueError):
    """A leaderboard folder that cannot be regenerated (bad ``leaderboard.yaml``, a missing grid)."""


@dataclass(frozen=True)
class TaskEntry:
    name: str
    policies: tuple[str, ...] = ()  # on top of the shared ones; ``transfer:<task>`` names another task's grid
    about: str = ""


@dataclass(frozen=True)
class BoardConfig:
    target: float = LEADERBOARD_TARGET.value
    resamples: int = LEADERBOARD_B
    seed: int = 0
    policies: tuple[str, ...] = ()
    tasks: tuple[TaskEntry, ...] = ()


def load_config(root: Path) -> BoardConfig:
    """``root/leaderboard.yaml`` (no file: no grids to replay, live runs only)."""
    import yaml

    path = Path(root) / CONFIG_FILE
    if not path.exists():
        return BoardConfig()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LeaderboardError(f"{path}: not valid YAML ({e})") from None
    known = {"target", "resamples", "seed", "policies", "tasks"}
    if not isinstance(raw, dict) or set(raw) - known:
        bad = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise LeaderboardError(f"{path}: unknown keys {bad}; known: {', '.join(sorted(known))}")
    tasks = raw.get("tasks") or {}
    if not isinstance(tasks, dict):
        raise LeaderboardError(f"{path}: 'tasks' must map task names to settings (policies, about)")
    entries = []
    for name, t in tasks.items():
        t = t or {}
        if not isinstance(t, dict) or set(t) - {"policies", "about"}:
            raise LeaderboardError(f"{path}: task {name!r} takes only 'policies' and 'about'")
        entries.append(TaskEntry(str(name), tuple(str(p) for p in t.get("policies") or ()), str(t.get("about") or "")))
    try:
        target, resamples = float(raw.get("target", LEADERBOARD_TARGET.value)), int(raw.get("resamples", LEADERBOARD_B))
    except (TypeError, ValueError):
        raise LeaderboardError(f"{path}: 'target' must be a number (e.g. 0.95) and 'resamples' an integer") from None
    if not 0 < target <= 1 or resamples < 1:
        raise LeaderboardError(f"{path}: 'target' must be in (0, 1] (a fraction of LLM-only accuracy) and "
                               f"'resamples' positive")
    return BoardConfig(target, resamples, int(raw.get("seed", 0)), tuple(str(p) for p in raw.get("policies") or ()),
                       tuple(entries))


def plugin_policies(listed: Sequence[str]) -> list[str]:
    """``route:<name>`` / ``cascade:<name>`` for every registered router / cascade that implements the
    replay protocol (``replay_scores``) and is not listed already: a baseline added as an adapter gets its
    rows without a config change."""
    from ..research.replay import replayable_strategies

    policies = [f"{kind}:{name}" for kind in ("route", "cascade") for name in replayable_strategies(kind)]
    return [p for p in sorted(policies, key=lambda p: p.replace(":", "-", 1)) if p not in listed]  # by strategy name


def task_policies(root: Path, cfg: BoardConfig, entry: TaskEntry) -> list[str]:
    """The policies replayed on one task's grid, ``transfer:<task>`` resolved to that task's grid folder."""
    own = []
    for p in entry.policies:
        kind, _, arg = p.partition(":")
        if kind == "transfer" and "/" not in arg:
            if not (root / "grids" / arg).is_dir():
                raise LeaderboardError(f"{root / CONFIG_FILE}: {entry.name}: {p} names no published grid "
                                       f"(no {root / 'grids' / arg})")
            p = f"transfer:{root / 'grids' / arg}"
        own.append(p)
    listed = [*cfg.policies, *own]
    return listed + plugin_policies(listed)


def replay_task(root: Path, cfg: BoardConfig, entry: TaskEntry, runs_dir: Path,
                resamples: int) -> list[dict[str, Any]]:
    """Replay one task's grid: write ``root/replay-<task>.md`` and the run folders under ``runs_dir``;
    returns the paper's claims on it (``research.claims``)."""
    from ..research.export import export_runs
    from ..research.grid import grid_command
    from ..research.replay import matched_and_claims, open_replay, render_markdown, run_policies

    grid = root / "grids" / entry.name
    if not grid.is_dir():
        raise LeaderboardError(f"{root / CONFIG_FILE} lists task {entry.name!r} but there is no grid at {grid}; "
                               f"publish one with `shepherd-bench publish-grid --grid G --out {grid}`")
    policies = task_policies(root, cfg, entry)
    rp = run_policies(open_replay(grid, root / "prices.json"), policies)
    target = f"{cfg.target:g}"
    matched, found = matched_and_claims(rp, target, resamples, cfg.seed)
    shown = [p.replace(f"{root / 'grids'}/", "leaderboard/grids/") for p in policies]
    published = rp.manifest.get("published") or {}
    n, planned = rp.lt["query_id"].nunique(), rp.manifest.get("n_queries")
    built = f"{n} queries" + (f" of the {planned} it plans (it resumes)" if planned and planned != n else "")
    preamble = (f"Grid: `{grid_command(rp.manifest)}`, {built}, grid protocol {published.get('protocol', '?')}, "
                f"published at `leaderboard/grids/{entry.name}` (`grid.jsonl.gz` sha256 `{rp.sha256}`). Generated "
                f"by `shepherd-bench leaderboard`; the same as `shepherd-bench replay --grid "
                f"leaderboard/grids/{entry.name} " + " ".join(f"--policy {p}" for p in shown) +
                f" --target {target} --resamples {resamples} --seed {cfg.seed}`." + (f" {entry.about}" if entry.about else ""))
    text = render_markdown(rp, matched, found,
                           title=f"Replay of the {entry.name} grid ({n} queries)", preamble=preamble)
    (root / f"replay-{entry.name}.md").write_text(text.rstrip() + "\n")
    export_runs(rp, runs_dir)
    return found


def _row_order(run: Run) -> tuple[int, str, float, str]:
    rank = {SLM_STRATEGY: 0, LLM_STRATEGY: 1}.get(run.strategy, 2)
    return (rank, run.strategy, float(run.samples["cost_usd"].mean()), run.path.name)


def committed_runs(runs_dir: Path, prices: PriceTable) -> list[Run]:
    """Run folders under ``runs_dir``: SLM-only, LLM-only, then by strategy and mean cost."""
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
                    matched, fmt_pct(r["cost_reduction"]), str(r["n"]), r["date"], r["harness_version"],
                    f"`{r['grid_sha256'][:12]}`" if r["grid_sha256"] else "live run"])
    return out


HEADERS = ["strategy", "SLM", "LLM", "accuracy [95% CI]", "LLM tokens / query", "$ / 1k queries [95% CI]",
           "$ / 1k at matched accuracy [95% CI]", "cost reduction vs LLM-only", "n", "date", "harness",
           "grid sha256"]


def render_leaderboard(root: Path, analyses: Sequence[TaskAnalysis], prices: PriceTable, runs: Sequence[Run],
                       plots: dict[str, str]) -> str:
    s = analyses[0].settings if analyses else Settings(target=LEADERBOARD_TARGET, B=LEADERBOARD_B)
    lines = [
        "# shepherd-bench leaderboard", "",
        "Generated by `shepherd-bench leaderboard`: every row is a policy replayed on a hint grid published "
        "under `leaderboard/grids/` (the policies are in `leaderboard.yaml`; the reports `replay-<task>.md` "
        "show every curve), or a live run committed under `leaderboard/runs/`; the last column is the "
        "first 12 hex digits of the sha256 of the grid file (`grid.jsonl.gz`) a row was replayed from. Do "
        "not edit by hand (CI regenerates it and fails on any difference).", "",
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


GENERATED = re.compile(r"(<!-- begin generated: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
SUMMARY_HEADERS = ["strategy", "accuracy [95% CI]", "$ / 1k queries [95% CI]", "$ / 1k at matched accuracy [95% CI]"]
SUMMARY_COLUMNS = (0, 3, 5, 6)  # of HEADERS
VARIANT_SUFFIXES = ("-huber", "-classes")
"""Predictor variants with a fixed stage 2: in the replay reports and the leaderboard, not in the summaries."""
VARIANT = re.compile("(" + "|".join(map(re.escape, VARIANT_SUFFIXES)) + r")(?=[,)]|$)")


def _is_variant(strategy: str) -> bool:
    """A predictor variant, named as a curve (``predicted:cv5-huber``) or as a run (``predictor=cv5-huber,``)."""
    return VARIANT.search(strategy) is not None


def summary_table(a: TaskAnalysis) -> str:
    """``results:<task>``: the leaderboard's rows of one task, fewer columns, predictor variants left out."""
    rows = [[r[i] for i in SUMMARY_COLUMNS] for r in leaderboard_rows(a) if not _is_variant(r[0])]
    return f"n = {len(a.aligned.query_ids)}.\n\n" + tabulate(rows, headers=SUMMARY_HEADERS, tablefmt="github",
                                                              disable_numparse=True)


def claims_table(claims: list[dict[str, Any]]) -> str:
    """``claims:<task>``: the paper's claims of one task, predictor variants left out."""
    from ..research.claims import claims_markdown

    return claims_markdown([c for c in claims if not _is_variant(str(c.get("curve", "")))])


def fill_generated(path: Path, blocks: dict[str, str]) -> None:
    """Rewrite every generated block of ``path`` (``<!-- begin generated: NAME -->`` ... ``<!-- end
    generated -->``) with ``blocks[NAME]``; a block this leaderboard does not write is an error."""
    text = path.read_text()

    def body(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in blocks:
            raise LeaderboardError(f"{path}: generated block {name!r} is not one `shepherd-bench leaderboard` "
                                   f"writes; known here: {', '.join(sorted(blocks)) or 'none'}")
        return m.group(1) + blocks[name].strip() + "\n" + m.group(4)

    new = GENERATED.sub(body, text)
    if new != text:
        path.write_text(new)


def write_leaderboard(root: Path, *, B: int | None = None, seed: int | None = None, plots: bool = True) -> Path:
    """``shepherd-bench leaderboard``: replay every task of ``root/leaderboard.yaml`` on its grid (writing
    ``root/replay-<task>.md``), add the live runs under ``root/runs``, and regenerate
    ``root/LEADERBOARD.md`` and ``root/plots/<task>.png`` from ``root`` alone, and the generated blocks of
    ``root/notes.md`` and ``root/../README.md``; returns the markdown path.
    ``B`` / ``seed`` override the configuration's resamples and seed (tests use fewer resamples)."""
    root = Path(root)
    cfg = load_config(root)
    prices = load_prices(root / "prices.json")
    B = cfg.resamples if B is None else B
    seed = cfg.seed if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="shepherd-bench-leaderboard-") as tmp:
        replayed = Path(tmp) / "runs"
        blocks = {f"claims:{entry.name}": claims_table(replay_task(root, cfg, entry, replayed, B))
                  for entry in cfg.tasks}
        runs = sorted(committed_runs(replayed, prices) + committed_runs(root / "runs", prices), key=_row_order)
        analyses = analyse(runs, Settings(target=Target("llm_fraction", cfg.target), B=B, seed=seed))
        rel: dict[str, str] = {}
        if plots:
            for a in analyses:
                plot_task(a, root / "plots" / f"{a.task}.png")
                rel[a.task] = f"plots/{a.task}.png"
        blocks.update({f"results:{a.task}": summary_table(a) for a in analyses})
        for doc in (root / "notes.md", root.parent / "README.md"):
            if doc.exists():
                fill_generated(doc, blocks)
        out = root / "LEADERBOARD.md"
        out.write_text(render_leaderboard(root, analyses, prices, runs, rel))
    return out
