"""The main job end to end on scripted backends: grading, metering, summary, cache and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench import backends as backends_mod
from shepherd_bench.backends.base import GenRequest, GenResult
from shepherd_bench.config import ModelConfig, RunConfig
from shepherd_bench.prices import load_prices
from shepherd_bench.runner import execute
from tests.scripted import ScriptedBackend, prompt_tokens


def gsm8k_gold(data_dir: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]]
    return [r["answer"].split("####")[-1].strip().replace(",", "") for r in rows]


class Backends:
    """Stands in for ``make_backend``: SLM always answers 0; the LLM answers the gold except for one query."""

    def __init__(self, golds: list[str], fail_on: str | None = None) -> None:
        self.golds = golds
        self.fail_on = fail_on
        self.made: dict[str, ScriptedBackend] = {}

    def llm(self, req: GenRequest) -> str | GenResult:
        q = req.messages[-1].content
        for i, g in enumerate(self.golds):
            if self.fail_on is not None and self.fail_on in q:
                return GenResult(text="", error="HTTP 500 after 3 retries")
            if f"[{i}]" in q:
                return f"reasoning words here #### {g}"
        return "#### 0"

    def make(self, spec: str, role: str, options: dict[str, Any] | None = None) -> ScriptedBackend:
        b = ScriptedBackend((lambda r: "#### 0") if role == "small" else self.llm, name=f"{role}-scripted")
        self.made[role] = b
        return b


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Backends:
    golds = gsm8k_gold(data_dir, 6)
    fake = Backends(golds)
    monkeypatch.setattr(backends_mod, "make_backend", fake.make)
    # tag each GSM8K question with its index so the scripted LLM knows which gold to give
    from shepherd_bench.tasks import gsm8k

    orig = gsm8k.GSM8K.query

    def tagged(self: Any, doc: Any) -> Any:
        q = orig(self, doc)
        idx = int(doc.id.rsplit("/", 1)[-1]) if doc.id.rsplit("/", 1)[-1].isdigit() else -1
        msgs = q.messages[:-1] + (type(q.messages[-1])("user", q.messages[-1].content + f" [{idx}]"),)
        return type(q)(id=q.id, messages=msgs, max_tokens=q.max_tokens, stop=q.stop)

    monkeypatch.setattr(gsm8k.GSM8K, "query", tagged)
    return fake


def cfg(data_dir: Path, strategy: str = "llm", limit: int = 6) -> RunConfig:
    return RunConfig(task="gsm8k", strategy=strategy, strategy_params={},
                     slm=ModelConfig("scripted:s", "free"), llm=ModelConfig("scripted:l", "gpt-4o-mini"),
                     limit=limit, data_dir=str(data_dir), batch_size=4)


def test_llm_run_grades_meters_and_prices_exactly(scripted: Backends, data_dir: Path, tmp_path: Path) -> None:
    prices = load_prices()
    res = execute(cfg(data_dir), prices=prices, out=tmp_path / "run", cache_path=tmp_path / "c.sqlite",
                  progress=False)
    s = res.summary
    reqs = scripted.made["large"].requests
    ids = [json.loads(x)["query_id"] for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(ids) == 6 and s["n"] == 6
    tagged = [i for i in range(6) if any(f"[{i}]" in r.messages[-1].content for r in reqs)]
    assert s["correct"] == len(tagged)
    assert s["accuracy"] == pytest.approx(len(tagged) / 6)
    in_tok = sum(prompt_tokens(r) for r in reqs)
    out_tok = sum(len(scripted.llm(r).split()) for r in reqs)  # type: ignore[union-attr]
    assert (s["llm_input_tokens"], s["llm_output_tokens"]) == (in_tok, out_tok)
    p = prices.get("gpt-4o-mini")
    assert s["cost_usd"] == pytest.approx((in_tok * p.input + out_tok * p.output) / 1e6)
    assert (s["model_calls"], s["cached_calls"], s["errors"], s["slm_calls"]) == (6, 0, 0, 0)
    assert "small" not in scripted.made  # LLM-only never builds the SLM
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["dataset"]["sha256"] == "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
    assert man["seed"] == 0 and man["prices"]["date"]

    again = execute(cfg(data_dir), prices=prices, out=tmp_path / "run2", cache_path=tmp_path / "c.sqlite",
                    progress=False).summary
    assert again["model_calls"] == 0 and again["cached_calls"] == 6
    for k in ("accuracy", "cost_usd", "llm_input_tokens", "llm_output_tokens"):
        assert again[k] == s[k]


def test_failed_calls_are_errors_never_graded(scripted: Backends, data_dir: Path, tmp_path: Path) -> None:
    scripted.fail_on = "[2]"
    s = execute(cfg(data_dir), prices=load_prices(), out=tmp_path / "run", use_cache=False,
                progress=False).summary
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["correct"] is None and "500" in bad[0]["error"]
    assert s["errors"] == 1
    assert s["accuracy_errors_as_wrong"] == pytest.approx(s["correct"] / 6)
    assert s["accuracy_excluding_errors"] == pytest.approx(s["correct"] / 5)


def test_killed_run_resumes_without_repeating_finished_samples(scripted: Backends, data_dir: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    execute(cfg(data_dir, limit=4), prices=load_prices(), out=out, use_cache=False, progress=False)
    # pretend the process died while writing the 4th record: tear it
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    (out / "samples.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    first_batch = len(scripted.made["large"].requests)
    s = execute(cfg(data_dir, limit=4), prices=load_prices(), out=out, use_cache=False, progress=False).summary
    assert len(scripted.made["large"].requests) == 1  # a fresh backend: only the torn sample is redone
    assert first_batch == 4 and s["n"] == 4
    ids = [json.loads(x)["query_id"] for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4


def test_a_different_configuration_does_not_reuse_the_folder(scripted: Backends, data_dir: Path,
                                                              tmp_path: Path) -> None:
    from shepherd_bench.config import ConfigError

    execute(cfg(data_dir, limit=2), prices=load_prices(), out=tmp_path / "r", use_cache=False, progress=False)
    with pytest.raises(ConfigError, match="different configuration"):
        execute(cfg(data_dir, strategy="slm", limit=2), prices=load_prices(), out=tmp_path / "r",
                use_cache=False, progress=False)


def test_preflight_checks_only_the_roles_a_strategy_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing API key fails at once for a strategy that calls the LLM, and not at all for SLM-only."""
    from shepherd_bench.backends.openai_compat import MissingAPIKey
    from shepherd_bench.config import ModelConfig, RunConfig
    from shepherd_bench.runner import build_models
    from shepherd_bench.strategies import make_strategy

    monkeypatch.delenv("SB_PREFLIGHT_KEY", raising=False)
    cfg = RunConfig(task="gsm8k", strategy="slm", strategy_params={}, slm=ModelConfig("llamacpp", "free"),
                    llm=ModelConfig("openai:gpt-4o-mini", "gpt-4o-mini", {"api_key_env": "SB_PREFLIGHT_KEY"}))
    assert make_strategy("slm", {}).roles == frozenset({"small"})
    assert make_strategy("llm", {}).roles == frozenset({"large"})
    assert make_strategy("shepherd", {}).roles == frozenset({"small", "large"})
    build_models(cfg, None, preflight=())  # nothing checked, nothing built
    with pytest.raises(MissingAPIKey, match="SB_PREFLIGHT_KEY is not set"):
        build_models(cfg, None, preflight=make_strategy("llm", {}).roles)


def test_a_finished_run_reruns_without_building_a_model(scripted: Backends, data_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-running a finished run resolves and loads no model (instant), and keeps the identities the
    first run recorded."""
    out = tmp_path / "run"
    first = execute(cfg(data_dir, limit=3), prices=load_prices(), out=out, use_cache=False, progress=False).summary
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["llm"].get("identity")  # recorded when the model ran

    def no_model(*a: Any, **k: Any) -> Any:
        raise AssertionError("a finished run built a model")

    monkeypatch.setattr(backends_mod, "make_backend", no_model)
    again = execute(cfg(data_dir, limit=3), prices=load_prices(), out=out, use_cache=False, progress=False).summary
    assert again["accuracy"] == first["accuracy"] and again["n"] == 3
    after = json.loads((out / "manifest.json").read_text())
    for role in ("slm", "llm"):
        assert after[role].get("identity") == manifest[role].get("identity")
    assert after["resumed"] == 1
