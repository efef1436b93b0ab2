"""The leaderboard is replayed from the published grids (`leaderboard/grids/<task>`), not read from
derived run folders: its rows agree with the raw grid files read by pandas alone, every row states the
sha256 of the grid file it came from, a grid changed after publication and an unpriced model are errors,
and a malformed `leaderboard.yaml` is a one-line error that names the fix."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from shepherd_bench.analysis.leaderboard import LeaderboardError, load_config, write_leaderboard

COMMITTED = Path(__file__).resolve().parent.parent / "leaderboard"


def board(tmp_path: Path, task: str, policies: str = "[slm, llm, oracle, tokens:16]") -> Path:
    root = tmp_path / "leaderboard"
    (root / "grids").mkdir(parents=True)
    shutil.copytree(COMMITTED / "grids" / task, root / "grids" / task)
    shutil.copy(COMMITTED / "prices.json", root / "prices.json")
    (root / "leaderboard.yaml").write_text(f"resamples: 200\npolicies: {policies}\ntasks:\n  {task}: {{}}\n")
    return root


def table_rows(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| strategy"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0]] = cells
    return out


@pytest.mark.parametrize("task", ["humaneval", "gsm8k", "mbpp"])
def test_rows_agree_with_the_raw_grid_and_state_its_sha256(task: str, tmp_path: Path, data_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if not (COMMITTED / "grids" / task).exists():
        pytest.skip(f"no published {task} grid")
    monkeypatch.setenv("SHEPHERD_BENCH_DATA", str(data_dir))
    root = board(tmp_path, task)
    rows = table_rows(write_leaderboard(root, plots=False).read_text())
    raw = pd.read_json(root / "grids" / task / "grid.jsonl.gz", lines=True)  # the published data, read directly
    first = raw.sort_values("sample").drop_duplicates(["query_id", "level"])
    slm = first[(first["level"] == 0) & ~first["full"]]["correct"].fillna(False).astype(bool).mean()
    # every full row of a query grades the same LLM answer (hints at or past its length are the answer)
    llm = first[first["full"]].drop_duplicates("query_id")["correct"].fillna(False).astype(bool).mean()
    assert rows["slm"][3].startswith(f"{100 * slm:.1f}%") and rows["llm"][3].startswith(f"{100 * llm:.1f}%")
    sha = hashlib.sha256((root / "grids" / task / "grid.jsonl.gz").read_bytes()).hexdigest()
    assert {r[-1] for r in rows.values()} == {f"`{sha[:12]}`"}
    assert {"slm", "llm", "shepherd-oracle", "shepherd(hint_tokens=16)"} <= set(rows)
    report = (root / f"replay-{task}.md").read_text()
    assert sha in report and "--policy tokens:16" in report


def test_a_grid_changed_after_publication_is_refused(tmp_path: Path) -> None:
    root = board(tmp_path, "humaneval", "[slm, llm]")
    packed = root / "grids" / "humaneval" / "grid.jsonl.gz"
    packed.write_bytes(packed.read_bytes() + b"\0")
    with pytest.raises(Exception, match="changed after publication"):
        write_leaderboard(root, plots=False)


def test_an_unpriced_model_is_an_error_never_free(tmp_path: Path) -> None:
    root = board(tmp_path, "humaneval", "[slm, llm]")
    manifest = root / "grids" / "humaneval" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["llm"]["price"] = "no-such-model"
    manifest.write_text(json.dumps(m))
    with pytest.raises(Exception, match="no-such-model"):
        write_leaderboard(root, plots=False)


@pytest.mark.parametrize(("text", "match"), [
    ("tasks: [humaneval]\n", "'tasks' must map"),
    ("polices: [slm]\n", "unknown keys.*polices"),
    ("target: 95\n", r"'target' must be in \(0, 1\]"),
    ("tasks:\n  humaneval: {policy: [slm]}\n", "takes only 'policies' and 'about'"),
    ("tasks: {humaneval: {}\n", "not valid YAML"),
])
def test_a_malformed_config_names_the_fix(text: str, match: str, tmp_path: Path) -> None:
    (tmp_path / "leaderboard.yaml").write_text(text)
    with pytest.raises(LeaderboardError, match=match):
        load_config(tmp_path)


def test_a_listed_task_without_a_grid_says_how_to_publish_one(tmp_path: Path) -> None:
    root = board(tmp_path, "humaneval", "[slm, llm]")
    (root / "leaderboard.yaml").write_text("tasks:\n  mbpp: {}\n")
    with pytest.raises(LeaderboardError, match=re.escape("shepherd-bench publish-grid")):
        write_leaderboard(root, plots=False)


def test_the_committed_config_replays_every_published_grid() -> None:
    cfg = load_config(COMMITTED)
    published = sorted(p.name for p in (COMMITTED / "grids").iterdir() if (p / "manifest.json").exists())
    assert sorted(t.name for t in cfg.tasks) == published


def test_generated_blocks_in_notes_and_readme_follow_the_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Figures quoted in notes.md and README.md are generated blocks: rewritten from the replay on every
    run (stale text inside is replaced, text around is kept), and `--check` fails while the README is stale."""
    from shepherd_bench import cli
    from shepherd_bench.analysis import leaderboard

    monkeypatch.setattr(leaderboard, "plugin_policies", lambda listed: [])  # the listed policies only: fast
    root = board(tmp_path, "humaneval", "[slm, llm, oracle, oracle-cascade, tokens:16]")
    block = "<!-- begin generated: {} -->\nstale figure 99.9%\n<!-- end generated -->\n"
    (root / "notes.md").write_text("Before.\n\n" + block.format("claims:humaneval") + "\nAfter.\n")
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n" + block.format("results:humaneval"))
    md = write_leaderboard(root).read_text()
    notes, text = (root / "notes.md").read_text(), readme.read_text()
    assert "stale figure" not in notes + text + md
    assert notes.startswith("Before.\n") and notes.rstrip().endswith("After.")
    assert "| 2 oracle shepherding is the cheapest oracle |" in notes and notes.split("\n\n")[1] in md
    rows = table_rows(text)
    assert rows["slm"][1] == table_rows(md)["slm"][3]  # the same accuracy and CI as the leaderboard row
    assert cli.main(["leaderboard", "--root", str(root), "--check"]) == 0
    readme.write_text(text.replace(rows["slm"][1], "12.3% [1.0, 2.0]"))
    capsys.readouterr()
    assert cli.main(["leaderboard", "--root", str(root), "--check"]) == 1
    assert f"out of date: {readme};" in capsys.readouterr().err


def test_summaries_leave_out_the_predictor_variants() -> None:
    from shepherd_bench.analysis.leaderboard import _is_variant

    assert _is_variant("shepherd(full_threshold=0.3, policy=predicted, predictor=cv5-huber, threshold=0.2) (1 of 23)")
    assert _is_variant("predicted:cv5-classes")
    assert not _is_variant("shepherd(full_threshold=0.3, policy=predicted, predictor=cv5, threshold=0.2) (1 of 21)")
    assert not _is_variant("predicted:cv5") and not _is_variant("transfer:gsm8k->humaneval")


def test_an_unknown_generated_block_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shepherd_bench.analysis import leaderboard

    monkeypatch.setattr(leaderboard, "plugin_policies", lambda listed: [])
    root = board(tmp_path, "humaneval", "[slm, llm]")
    (root / "notes.md").write_text("<!-- begin generated: results:mbpp -->\n<!-- end generated -->\n")
    with pytest.raises(LeaderboardError, match=r"'results:mbpp'.*results:humaneval"):
        write_leaderboard(root, B=100, plots=False)
