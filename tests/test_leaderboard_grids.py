"""The committed leaderboard rows are the replay of the committed grids: replaying the published grids
(`leaderboard/grids/<task>`) with the policies that learn nothing gives exactly the committed run folders'
samples (accuracy, calls and tokens per query), so nobody has to trust `leaderboard/runs/`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shepherd_bench.research.export import export_runs
from shepherd_bench.research.replay import open_replay, run_policies

ROOT = Path(__file__).resolve().parent.parent / "leaderboard"
POLICIES = ["slm", "llm", "oracle", "oracle-route", "oracle-cascade", "tokens:16", "tokens:32", "tokens:64",
            "cascade:logprob", "route:random"]


def samples(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("task", ["humaneval", "gsm8k"])
def test_committed_runs_are_the_replay_of_the_committed_grid(task: str, tmp_path: Path, data_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    grid = ROOT / "grids" / task
    if not grid.exists():
        pytest.skip(f"no published {task} grid")
    monkeypatch.setenv("SHEPHERD_BENCH_DATA", str(data_dir))
    manifest = json.loads((grid / "manifest.json").read_text())
    assert manifest["published"]["schema"] == "shepherd-bench hint grid v1"
    rp = run_policies(open_replay(grid), POLICIES)
    exported = export_runs(rp, tmp_path / "runs")
    assert len(exported) >= len(POLICIES)
    for folder in exported:
        committed = ROOT / "runs" / folder.name
        assert committed.exists(), f"{folder.name}: replayed from the grid but not on the leaderboard"
        assert samples(folder) == samples(committed), folder.name
