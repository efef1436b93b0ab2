"""Task registry and dataset loaders: local path, env var, hub fallback offline, errors, sha256."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from shepherd_bench.registry import UnknownName
from shepherd_bench.tasks import DataFormatError, DataNotFound, get_task, task_names
from shepherd_bench.tasks.cnk12 import CNK12, sample_rows
from shepherd_bench.tasks.data import DATA_ENV

GSM8K_SHA = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
MBPP_SHA = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
SANITIZED_SHA = "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9"


@pytest.fixture(autouse=True)
def _no_env_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)


def test_task_names_and_unknown_name() -> None:
    assert task_names() == ["cnk12", "gsm8k", "humaneval", "mbpp", "mbpp_sanitized"]
    with pytest.raises(UnknownName, match="did you mean 'mbpp'"):
        get_task("mbp")


def test_task_options_are_checked() -> None:
    assert isinstance(get_task("cnk12", size=5, seed=3), CNK12)
    with pytest.raises(ValueError, match="does not take options"):
        get_task("gsm8k", size=3)


@pytest.mark.parametrize(
    ("name", "count", "sha"),
    [("gsm8k", 1319, GSM8K_SHA), ("mbpp", 500, MBPP_SHA), ("mbpp_sanitized", 257, SANITIZED_SHA)],
)
def test_local_path(data_dir: Path, name: str, count: int, sha: str) -> None:
    ds = get_task(name).load(data_dir)
    assert len(ds.docs) == count
    assert ds.sha256 == sha
    assert ds.source.startswith(str(data_dir))
    assert len({d.id for d in ds.docs}) == count


def test_env_var(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    assert get_task("gsm8k").load().sha256 == GSM8K_SHA


def test_mbpp_split_and_prompt(data_dir: Path) -> None:
    docs = get_task("mbpp").load(data_dir).docs
    assert [d.record["task_id"] for d in docs] == list(range(11, 511))
    first = docs[0]
    for t in first.record["public_examples"].splitlines():
        assert t in first.prompt  # the three tests are shown, as in the original paper
    assert first.record["tests"].count("assert") >= 3
    ids = {d.record["task_id"] for d in get_task("mbpp_sanitized").load(data_dir).docs}
    assert ids <= set(range(11, 511))


def test_humaneval_from_package() -> None:
    ds = get_task("humaneval").load()
    assert len(ds.docs) == 164
    assert ds.source.endswith("HumanEval.jsonl.gz")
    assert ds.sha256 == hashlib.sha256(Path(ds.source).read_bytes()).hexdigest()
    q = get_task("humaneval").query(ds.docs[0])
    assert q.messages[0].role == "system" and q.messages[1].role == "user"
    assert ">>> has_close_elements" in q.public_examples
    assert "check(" not in q.messages[1].content  # grading tests never reach the prompt


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataNotFound) as e:
        get_task("gsm8k").load(tmp_path)
    msg = str(e.value)
    assert "gsm8k/test.jsonl" in msg and DATA_ENV in msg and "--data-dir" in msg


def test_offline_without_local_copy_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name in ("gsm8k", "mbpp", "mbpp_sanitized", "cnk12"):
        start = time.monotonic()
        with pytest.raises(DataNotFound) as e:
            get_task(name).load()
        assert time.monotonic() - start < 5
        assert all(s in str(e.value) for s in ("offline", DATA_ENV, "--data-dir"))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_malformed_jsonl_names_file_and_field(tmp_path: Path) -> None:
    f = _write(tmp_path / "gsm8k" / "test.jsonl", json.dumps({"question": "1+1?"}) + "\n")
    with pytest.raises(DataFormatError) as e:
        get_task("gsm8k").load(tmp_path)
    assert str(f) in str(e.value) and "'answer'" in str(e.value)


def test_malformed_json_syntax(tmp_path: Path) -> None:
    _write(tmp_path / "gsm8k" / "test.jsonl", "{not json\n")
    with pytest.raises(DataFormatError, match="line 1"):
        get_task("gsm8k").load(tmp_path)


def test_gsm8k_answer_without_marker(tmp_path: Path) -> None:
    _write(tmp_path / "gsm8k" / "test.jsonl", json.dumps({"question": "q", "answer": "2"}) + "\n")
    with pytest.raises(DataFormatError, match="record 0"):
        get_task("gsm8k").load(tmp_path)


def test_malformed_mbpp(tmp_path: Path) -> None:
    row = {"task_id": 11, "text": "t", "code": "def f(): pass", "test_setup_code": ""}
    _write(tmp_path / "mbpp" / "mbpp.jsonl", json.dumps(row) + "\n")
    with pytest.raises(DataFormatError, match="'test_list'"):
        get_task("mbpp").load(tmp_path)
    _write(tmp_path / "mbpp" / "sanitized-mbpp.json", json.dumps({"not": "an array"}))
    with pytest.raises(DataFormatError, match="sanitized-mbpp.json"):
        get_task("mbpp_sanitized").load(tmp_path)


def test_cnk12_fixture(fixtures_dir: Path) -> None:
    ds = CNK12().load(fixtures_dir)
    assert len(ds.docs) == 7  # cn_k12 rows with an answer; other sources and empty answers dropped
    f = fixtures_dir / "cnk12" / "openr1_math_sample.jsonl"
    assert ds.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    golds = {d.record["gold"] for d in ds.docs}
    assert "3" not in golds and "55" not in golds and "-\\frac{4}{5}" in golds
    assert all(d.id.startswith("cnk12/") and "\\boxed" in d.prompt for d in ds.docs)


def test_cnk12_seeded_sample(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = get_task("cnk12", size=4, seed=1).load(fixtures_dir)
    b = get_task("cnk12", size=4, seed=1).load(fixtures_dir)
    c = get_task("cnk12", size=4, seed=2).load(fixtures_dir)
    assert [d.id for d in a.docs] == [d.id for d in b.docs]
    assert len(a.docs) == 4 and [d.id for d in a.docs] != [d.id for d in c.docs]
    monkeypatch.setenv(DATA_ENV, str(fixtures_dir))
    assert [d.id for d in get_task("cnk12", size=4, seed=1).load().docs] == [d.id for d in a.docs]


def test_cnk12_sample_ignores_input_order() -> None:
    rows = [{"source": "cn_k12", "problem": f"p{i}", "answer": str(i), "uuid": f"u{i}"} for i in range(20)]
    assert sample_rows(rows, 5, 0) == sample_rows(list(reversed(rows)), 5, 0)


def test_cnk12_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(DataNotFound, match="cnk12"):
        CNK12().load(tmp_path)
    _write(tmp_path / "cnk12" / "x.jsonl", json.dumps({"problem": "p", "source": "cn_k12"}) + "\n")
    with pytest.raises(DataFormatError, match="x.jsonl.*'answer'"):
        CNK12().load(tmp_path)


def test_cnk12_scores_expressions(fixtures_dir: Path) -> None:
    task = get_task("cnk12")
    docs = task.load(fixtures_dir).docs
    answers = [f"Reasoning... so the answer is $\\boxed{{{d.record['gold']}}}$." for d in docs]
    assert all(s.correct for s in task.score(docs, answers))
    wrong = task.score(docs, ["\\boxed{\\pi^{7}}"] * len(docs))
    assert not any(s.correct for s in wrong) and all(s.status == "fail" for s in wrong)


def test_an_unreachable_hub_fails_at_once_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a local copy and with the hub unreachable, the error comes from one quick probe, before
    ``datasets`` (which retries for ~25 s) is asked at all, and names both fixes."""
    import datasets

    from shepherd_bench.tasks.data import DataNotFound, HubSpec, hub_unreachable, load_hub

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens

    def never(*a: object, **k: object) -> None:
        raise AssertionError("datasets was asked although the hub is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", never)
    assert "unreachable" in (hub_unreachable() or "")
    with pytest.raises(DataNotFound, match="unreachable") as err:
        load_hub(HubSpec("mbpp", "mbpp/mbpp.jsonl", "google-research-datasets/mbpp", "full", "test"))
    assert "--data-dir" in str(err.value) and "SHEPHERD_BENCH_DATA" in str(err.value)
