"""Published grids: compressed, byte-reproducible, no prompt text (the benchmark's own data), readable
with pandas, and replayed exactly like the working grid they came from (prompts re-read from the task)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from shepherd_bench.research.grid import GridError, export_grid, load_grid, load_llm_answers
from shepherd_bench.research.replay import open_replay, run_policies
from shepherd_bench.tasks import get_task


def write_gsm8k_grid(root: Path, data_dir: Path, n: int = 40) -> dict[str, str]:
    """A hand-made grid over the first ``n`` real GSM8K questions (answers and grades invented)."""
    ds = get_task("gsm8k").load(data_dir)
    docs = ds.docs[:n]
    root.mkdir(parents=True)
    llm, rows = [], []
    for i, d in enumerate(docs):
        hard = i % 3 == 0
        llm.append({"query_id": d.id, "prompt": d.prompt, "answer_prefix": "", "text": "so \\boxed{1}",
                    "tokens": ["so", " \\boxed{1}"] * 40, "output_tokens": 80, "input_tokens": 90,
                    "finish_reason": "stop"})
        for level, k, full in ((0.0, 0, False), (16.0, 16, False), (80.0, 80, True)):
            ok = full or not hard or level > 0
            rows.append({"query_id": d.id, "level": level, "hint_tokens": k, "full": full, "sample": 0,
                         "hint_text": "so" * (k // 2), "text": "x", "correct": ok, "status": "pass" if ok else "fail",
                         "extracted": "1", "detail": "", "error": None, "llm_input_tokens": 90,
                         "llm_output_tokens": 80, "slm_input_tokens": 0 if full else 90 + k,
                         "slm_output_tokens": 0 if full else 60, "slm_mean_logprob": -0.2 if ok else -1.1,
                         "slm_finish_reason": "" if full else "stop", "seed": 0})
    (root / "llm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in llm))
    (root / "grid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"task": "gsm8k", "config": {"task": "gsm8k", "protocol": 2, "spec": {"kind": "tokens"}},
                "dataset": {"sha256": ds.sha256}, "argv": ["shepherd-bench", "grid"], "llm": {"price": "gpt-4o"},
                "slm": {"price": "free"}, "spec": {"kind": "tokens"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return {d.id: d.prompt for d in docs}


def test_published_grid_replays_like_the_original(data_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEPHERD_BENCH_DATA", str(data_dir))
    prompts = write_gsm8k_grid(tmp_path / "work", data_dir)
    paths = export_grid(tmp_path / "work", tmp_path / "pub")
    assert sorted(p.name for p in paths) == ["grid.jsonl.gz", "llm.jsonl.gz", "manifest.json"]
    blob = b"".join(gzip.decompress(p.read_bytes()) for p in paths if p.suffix == ".gz")
    assert not any(q.encode() in blob for q in list(prompts.values())[:5])  # no question text published
    man = json.loads((tmp_path / "pub" / "manifest.json").read_text())
    assert "argv" not in man and man["published"]["queries"] == 40 and man["published"]["protocol"] == 2
    # byte-reproducible
    again = export_grid(tmp_path / "work", tmp_path / "pub2")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    # readable as plain data
    df = pd.read_json(tmp_path / "pub" / "grid.jsonl.gz", lines=True)
    assert len(df) == 120 and {"hint_text", "text", "correct", "slm_output_tokens"} <= set(df.columns)
    # prompts come back from the task data; grid rows load the same
    assert {q: r["prompt"] for q, r in load_llm_answers(tmp_path / "pub").items()} == prompts
    pd.testing.assert_frame_equal(load_grid(tmp_path / "pub"), load_grid(tmp_path / "work"), check_like=True)
    policies = ["slm", "llm", "oracle", "tokens:16", "route:random", "predicted:cv-huber"]
    a = run_policies(open_replay(tmp_path / "work"), policies)
    b = run_policies(open_replay(tmp_path / "pub"), policies)
    assert [p.summary() for p in a.singles] == [p.summary() for p in b.singles]
    assert [[p.summary() for p in c.points] for c in a.curves] == [[p.summary() for p in c.points] for c in b.curves]


def test_published_grid_refuses_other_data(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEPHERD_BENCH_DATA", str(data_dir))
    write_gsm8k_grid(tmp_path / "work", data_dir, n=5)
    export_grid(tmp_path / "work", tmp_path / "pub")
    man_path = tmp_path / "pub" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["dataset"]["sha256"] = "0" * 64
    man_path.write_text(json.dumps(man))
    with pytest.raises(GridError, match="SHEPHERD_BENCH_DATA"):
        load_llm_answers(tmp_path / "pub")


def test_building_on_a_published_grid_unpacks_it_to_resume(data_dir: Path, tmp_path: Path) -> None:
    from shepherd_bench.research.grid import GridStore

    write_gsm8k_grid(tmp_path / "work", data_dir, n=5)
    export_grid(tmp_path / "work", tmp_path / "pub")
    before = GridStore(tmp_path / "pub").rows()
    man = {**json.loads((tmp_path / "pub" / "manifest.json").read_text()), "fingerprint": "f"}
    (tmp_path / "pub" / "manifest.json").write_text(json.dumps(man))  # as a real grid's manifest has
    store = GridStore(tmp_path / "pub")
    store.open(man, "f")
    assert store.grid_path.exists() and not store.grid_path.with_name("grid.jsonl.gz").exists()
    assert store.rows() == before
    store.append(store.grid_path, [{**before[0], "sample": 1}])
    assert len(store.rows()) == len(before) + 1
