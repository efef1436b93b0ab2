"""Our task definitions in ``tasks/`` as lm-eval sees them (TaskManager without lm-eval's own tasks)."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.tasks import task_names
from shepherd_bench.tasks.data import DATA_ENV
from shepherd_bench.tasks.lm_eval_hooks import YAML_PACKAGE_DIR, YAML_REPO_DIR, query_for, task_yaml_dir

REPO = Path(__file__).resolve().parent.parent


def _manager(metadata: dict[str, Any] | None = None) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_yaml_dir()), include_defaults=False, metadata=metadata)


def _load(names: list[str], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded = _manager(metadata).load(names)
    return {name: loaded["tasks"][name] for name in names}


def test_yaml_dir_and_package_copy() -> None:
    assert task_yaml_dir() == REPO / "tasks" == YAML_REPO_DIR
    repo = sorted(p.name for p in YAML_REPO_DIR.glob("*.yaml"))
    assert repo == [f"{n}.yaml" for n in task_names()]
    match, mismatch, errors = filecmp.cmpfiles(YAML_REPO_DIR, YAML_PACKAGE_DIR, repo, shallow=False)
    assert (mismatch, errors) == ([], []), "shepherd_bench/task_yaml must be a link to ../tasks"
    assert sorted(p.name for p in YAML_PACKAGE_DIR.glob("*.yaml")) == repo


def test_task_manager_indexes_only_our_tasks() -> None:
    assert sorted(_manager().all_tasks) == task_names()


def test_process_results_scores_right_and_wrong(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    tasks = _load(["gsm8k", "humaneval", "mbpp"])
    gsm8k = tasks["gsm8k"]
    doc = next(iter(gsm8k.test_docs()))
    assert gsm8k.doc_to_text(doc) == doc["prompt"]
    assert gsm8k.OUTPUT_TYPE == "generate_until"
    assert gsm8k.process_results(doc, [f"so... #### {doc['target']}"])["acc"] == 1.0
    assert gsm8k.process_results(doc, ["#### -1"])["acc"] == 0.0
    he = tasks["humaneval"]
    hdoc = next(iter(he.test_docs()))
    record = query_for(hdoc)
    assert record.messages[1].content == hdoc["prompt"]
    canonical = "    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n" \
                "            if abs(a - b) < threshold:\n                return True\n    return False\n"
    assert he.process_results(hdoc, [canonical])["pass@1"] == 1.0
    assert he.process_results(hdoc, ["    return True\n"])["pass@1"] == 0.0
    mbpp = tasks["mbpp"]
    assert len(list(mbpp.test_docs())) == 500
    assert mbpp.config.generation_kwargs["max_gen_toks"] == 512


def test_metadata_sets_data_dir_and_options(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    task = _load(["cnk12"], {"data_dir": str(fixtures_dir), "size": 3, "seed": 5})["cnk12"]
    docs = list(task.test_docs())
    assert len(docs) == 3
    assert task.process_results(docs[0], [f"\\boxed{{{docs[0]['target']}}}"])["acc"] == 1.0
