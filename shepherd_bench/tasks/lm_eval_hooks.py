"""The functions the lm-eval task definitions in ``tasks/*.yaml`` call through ``!function``.

Each YAML names its task in ``dataset_kwargs: {task: <name>}``; the data directory comes from the
TaskManager's ``metadata={"data_dir": ...}`` or ``$SHEPHERD_BENCH_DATA``; task options (e.g. the CNK12
``size``/``seed``) from ``metadata`` too. A doc row is ``{task, id, prompt, target, record}`` with
``record`` as JSON text, so lm-eval's Arrow tables never need to know our record schemas.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ..strategies.base import Query
from . import get_task
from .base import Doc, Task

METRICS = {"code": "pass@1", "math": "acc"}
YAML_PACKAGE_DIR = Path(__file__).resolve().parent.parent / "task_yaml"
YAML_REPO_DIR = Path(__file__).resolve().parent.parent.parent / "tasks"


def task_yaml_dir() -> Path:
    """The folder holding our lm-eval task YAML: the repo's ``tasks/`` in a checkout (editable
    install), else the copy shipped as package data (wheel install)."""
    if any(YAML_REPO_DIR.glob("*.yaml")):
        return YAML_REPO_DIR
    return YAML_PACKAGE_DIR


def _task_options(task: Task, metadata: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(type(task)).parameters
    return {k: v for k, v in metadata.items() if k in params}


def build_task(name: str, metadata: dict[str, Any]) -> Task:
    base = get_task(name)
    options = _task_options(base, metadata)
    return get_task(name, **options) if options else base


def doc_row(task: str, doc: Doc) -> dict[str, str]:
    target = str(doc.record.get("gold", ""))
    return {"task": task, "id": doc.id, "prompt": doc.prompt, "target": target,
            "record": json.dumps(doc.record, ensure_ascii=False)}


def row_doc(row: dict[str, Any]) -> Doc:
    return Doc(id=str(row["id"]), prompt=str(row["prompt"]), record=json.loads(row["record"]))


def custom_dataset(task: str, data_dir: str | None = None, **metadata: Any) -> Any:
    """``custom_dataset`` for lm-eval: a DatasetDict with one ``test`` split of our docs."""
    import datasets

    ds = build_task(task, metadata).load(Path(data_dir) if data_dir else None)
    rows = [doc_row(task, d) for d in ds.docs]
    table = datasets.Dataset.from_list(rows)
    table.info.description = f"{task} from {ds.source} (sha256 {ds.sha256})"
    return datasets.DatasetDict({"test": table})


def doc_to_text(doc: dict[str, Any]) -> str:
    return str(doc["prompt"])


def doc_to_target(doc: dict[str, Any]) -> str:
    return str(doc["target"])


def query_for(doc: dict[str, Any]) -> Query:
    """Our Query (system + user messages, max tokens) for an lm-eval doc row."""
    return get_task(str(doc["task"])).query(row_doc(doc))


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Grade the first generation of ``doc`` with our scorer: ``pass@1`` (code) or ``acc`` (math).

    A response from the ``shepherd-bench`` lm-eval model carries its cost, so every logged sample gets
    ``cost_usd`` and the LLM token counts; other models' responses do not, and get NaN (unknown, not 0).
    """
    task = get_task(str(doc["task"]))
    response = results[0]
    score = task.score([row_doc(doc)], [str(response)], workers=1)[0]
    nan = float("nan")
    return {
        METRICS[task.kind]: 1.0 if score.correct else 0.0,
        "cost_usd": float(getattr(response, "cost_usd", nan)),
        "llm_input_tokens": float(getattr(response, "llm_input_tokens", nan)),
        "llm_output_tokens": float(getattr(response, "llm_output_tokens", nan)),
    }
