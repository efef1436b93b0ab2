"""Replayed policies as run folders, so reports and the leaderboard treat them like live runs.

Each exported folder has the run-folder shape (``manifest.json``, ``samples.jsonl``, ``summary.json``);
its calls are rebuilt from the grid's token counts (the LLM call a live run would have made: the prompt
tokens in, the hint tokens out) and its manifest names the grid and the policy it came from. A replayed
policy equals the same policy run live (``tests/test_replay_live.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import __version__
from ..store import RunStore, write_json_atomic

# policy spec -> (strategy name, strategy params) as a live run would record them
_NAMES = {"slm": "slm", "llm": "llm", "oracle": "shepherd-oracle", "oracle-route": "route-oracle",
          "oracle-cascade": "cascade-oracle"}


def _strategy(policy: str, label: str | None, token_grid: bool) -> tuple[str, dict[str, Any]]:
    if policy in _NAMES:
        return _NAMES[policy], {}
    kind, _, arg = policy.partition(":")
    size = "hint_tokens" if token_grid or kind == "tokens" else "hint_fraction"
    if kind in ("fixed", "tokens"):
        return "shepherd", {size: _num(arg)}
    if kind == "fixed-curve" and label is not None:
        return ("slm", {}) if float(label) == 0 else ("shepherd", {size: _num(label)})
    if kind in ("cascade", "route") and label is not None:
        return f"{kind}-{arg.removeprefix('route-')}", {"threshold": _num(label)}
    if kind in ("predicted", "transfer") and label is not None:
        # curve names: predicted:cv5, predicted:<model folder>, transfer:<train grid>-><this grid>
        source = arg if kind == "predicted" else "transfer-from-" + arg.split("->")[0]
        source = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
        # point labels: "p>=T" (hint threshold) or "p>=T full>=F" (and the full-answer threshold)
        knobs = dict(part.split(">=", 1) for part in label.split())
        params: dict[str, Any] = {"policy": "predicted", "predictor": source, "threshold": _num(knobs["p"])}
        if "full" in knobs:
            params["full_threshold"] = _num(knobs["full"])
        return "shepherd", params
    return re.sub(r"[^A-Za-z0-9_.-]", "_", policy), {}


def _num(text: str) -> int | float:
    """Numeric parameters stay numbers, so reports see the swept dimension."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _calls(row: Any) -> list[dict[str, Any]]:
    """The calls a live run would have recorded for one replayed outcome row: the LLM's (prompt in, hint
    or full answer out) and the SLM's (its prompt in, its continuation out, as the grid counted them)."""
    hint, full = int(row["hint_tokens"]), bool(row["full"])
    cut = row.get("cut")
    finish = "" if cut is None or cut != cut else ("length" if cut >= 0.5 else "stop")  # the graded answer's
    llm: list[dict[str, Any]] = []
    if hint > 0 or full:
        llm.append({"role": "large", "input_tokens": int(row["llm_tokens"]) - hint, "cached_input_tokens": 0,
                    "output_tokens": hint, "latency_s": 0.0, "cached": False, "error": None,
                    "purpose": "answer" if full else "hint", "finish_reason": finish if full else "length"})
    slm: list[dict[str, Any]] = []
    slm_in, slm_out = float(row["slm_input_tokens"]), float(row["slm_output_tokens"])
    if slm_in + slm_out > 0:
        slm.append({"role": "small", "input_tokens": int(round(slm_in)), "cached_input_tokens": 0,
                    "output_tokens": int(round(slm_out)), "latency_s": 0.0, "cached": False,
                    "error": None, "purpose": "answer" if full else "continue", "finish_reason": "" if full else finish})
    # a full answer after SLM tokens is a cascade's deferral: the SLM answered first, then the LLM
    return slm + llm if full else llm + slm


def _status(row: Any) -> str:
    if row["acc"] >= 0.5:
        return "pass"
    no_answer = row.get("no_answer")
    return "no_answer" if no_answer is not None and no_answer == no_answer and no_answer >= 0.5 else "fail"


def export_policy(rp: Any, result: Any, policy: str, label: str | None, dest_root: Path) -> Path:
    """Write one replayed policy (a ``PolicyResult``) as a run folder under ``dest_root``."""
    man = rp.manifest
    task = str(man.get("task") or man.get("config", {}).get("task"))
    token_grid = (man.get("config", {}).get("spec") or man.get("spec") or {}).get("kind") == "tokens"
    strategy, params = _strategy(policy, label, token_grid)
    suffix = "".join(f"-{k}{v}" for k, v in params.items())
    root = dest_root / f"{task}-{strategy}{suffix}-replay"
    store = RunStore(root)
    records = []
    for i, row in result.outcome.iterrows():
        records.append({"query_id": row["query_id"], "index": int(i), "correct": bool(row["acc"] >= 0.5),
                        "status": _status(row), "error": None,
                        "calls": _calls(row), "decision": {"hint_tokens": int(row["hint_tokens"]),
                                                           "full_llm_answer": bool(row["full"])}})
    if store.samples_path.exists():
        store.samples_path.unlink()
    manifest = {
        "task": task, "strategy": {"strategy": strategy, "kind": "replay", "params": params},
        "slm": man.get("slm"), "llm": man.get("llm"), "prices": man.get("prices"), "seed": man.get("seed", 0),
        "dataset": man.get("dataset"), "created": man.get("created"), "host": man.get("host"),
        "harness_version": __version__, "source": {"grid": rp.grid.name, "grid_sha256": rp.sha256, "policy": policy,
                                                        "point": label},
    }
    write_json_atomic(store.manifest_path, manifest)
    store.append(records)
    n = len(records)
    correct = sum(r["correct"] for r in records)
    write_json_atomic(store.summary_path, {"task": task, "strategy": strategy, "strategy_params": params, "n": n,
                                           "correct": correct, "accuracy": correct / n if n else 0.0,
                                           "replayed_from": rp.grid.name, "harness_version": __version__})
    return root


def export_runs(rp: Any, dest_root: Path) -> list[Path]:
    """Every single policy and every point of every curve of a replay, as run folders."""
    out = [export_policy(rp, r, r.name, None, dest_root) for r in rp.singles]
    for c in rp.curves:
        # the end points of a threshold sweep (+-inf) are SLM-only and LLM-only: exported once, as such
        out += [export_policy(rp, p, c.name, lab, dest_root) for lab, p in zip(c.labels, c.points, strict=True)
                if "inf" not in lab]
    return sorted(set(out))
