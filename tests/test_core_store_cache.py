"""Run store, generation cache, metering and prices: the bookkeeping every number depends on."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from shepherd_bench.backends.base import BackendIdentity, GenRequest, GenResult, Message, request_key
from shepherd_bench.backends.cache import CachedBackend, GenerationCache
from shepherd_bench.backends.meter import CallRecord, MeteredBackend
from shepherd_bench.config import ConfigError, ModelConfig, RunConfig, parse_kv
from shepherd_bench.prices import Price, calls_cost, load_prices
from shepherd_bench.store import RunStore

IDENT = BackendIdentity(kind="test", model="m", revision="r1")


def req(text: str, **kw: object) -> GenRequest:
    return GenRequest(messages=(Message("user", text),), max_tokens=8, **kw)  # type: ignore[arg-type]


class CountingBackend:
    def __init__(self, ident: BackendIdentity = IDENT, fail: set[str] | None = None) -> None:
        self.ident = ident
        self.calls: list[GenRequest] = []
        self.fail = fail or set()

    @property
    def identity(self) -> BackendIdentity:
        return self.ident

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]:
        self.calls.extend(requests)
        out = []
        for r in requests:
            text = r.messages[-1].content
            if text in self.fail:
                out.append(GenResult(text="", error="boom"))
            else:
                out.append(GenResult(text=text.upper(), input_tokens=10, output_tokens=len(text)))
        return out

    def close(self) -> None:
        pass


def test_cache_key_includes_backend_identity_and_whole_request() -> None:
    other = BackendIdentity(kind="test", model="m", revision="r2")
    assert request_key(IDENT, req("a")) != request_key(other, req("a"))
    assert request_key(IDENT, req("a")) != request_key(IDENT, req("a", prefix="x"))
    assert request_key(IDENT, req("a")) != request_key(IDENT, req("a", seed=1))
    assert request_key(IDENT, req("a")) == request_key(IDENT, req("a"))


def test_cached_backend_second_call_makes_no_model_call(tmp_path: Path) -> None:
    inner = CountingBackend()
    cache = GenerationCache(tmp_path / "c.sqlite")
    metered = MeteredBackend(CachedBackend(inner, cache), "large")
    first = metered.generate([req("a"), req("b"), req("a")])
    assert [r.text for r in first] == ["A", "B", "A"]
    assert len(inner.calls) == 2  # duplicate request in one batch is asked once
    assert metered.totals.model_calls == 2 and metered.totals.cached_calls == 1
    second = metered.generate([req("b"), req("a")])
    assert len(inner.calls) == 2
    assert all(r.cached for r in second)
    assert [(r.input_tokens, r.output_tokens) for r in second] == [(10, 1), (10, 1)]  # usage kept for pricing


def test_errors_are_not_cached(tmp_path: Path) -> None:
    inner = CountingBackend(fail={"bad"})
    cb = CachedBackend(inner, GenerationCache(tmp_path / "c.sqlite"))
    assert cb.generate([req("bad")])[0].error == "boom"
    cb.generate([req("bad")])
    assert len(inner.calls) == 2


def _writer(path: str, worker: int) -> None:
    cache = GenerationCache(Path(path))
    for i in range(200):
        r = req(f"q{i % 50}")
        cache.put_many([(request_key(IDENT, r), IDENT, r, GenResult(text=f"w{worker}-{i}"))])
    cache.close()


def test_concurrent_writers_do_not_corrupt_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    GenerationCache(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = GenerationCache(path)
    keys = [request_key(IDENT, req(f"q{i}")) for i in range(50)]
    got = cache.get_many(keys)
    assert len(got) == 50  # every key present once, first writer wins, readable


def test_store_resume_repairs_torn_last_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.open({"fingerprint": "abc", "created": "t0"}, "abc")
    store.append([{"query_id": "q1", "correct": True}, {"query_id": "q2", "correct": False}])
    with open(store.samples_path, "a") as f:
        f.write('{"query_id": "q3", "corr')  # killed mid-write
    done = store.load_done()
    assert sorted(done) == ["q1", "q2"]
    assert store.samples_path.read_text().endswith("\n")
    store.append([{"query_id": "q3", "correct": True}])
    assert sorted(store.load_done()) == ["q1", "q2", "q3"]


def test_store_refuses_a_different_configuration(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.open({"fingerprint": "abc"}, "abc")
    store.open({"fingerprint": "abc"}, "abc")  # same config: resume
    assert json.loads(store.manifest_path.read_text())["resumed"] == 1
    with pytest.raises(ConfigError, match="different configuration"):
        store.open({"fingerprint": "xyz"}, "xyz")


def test_price_formula_counts_cached_input_at_cached_rate() -> None:
    p = Price("x", input=2.0, cached_input=0.5, output=8.0)
    # 1000 prompt tokens of which 400 cached, 100 output
    assert p.cost(1000, 400, 100) == pytest.approx((600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6)
    calls = [CallRecord("large", 100, 0, 10, 0.1, False), CallRecord("small", 50, 0, 50, 0.1, False)]
    large = Price("l", 0.59, 0.59, 0.79)
    small = Price("s", 0.0, 0.0, 0.0)
    assert calls_cost(calls, large, small) == pytest.approx((100 * 0.59 + 10 * 0.79) / 1e6)


def test_packaged_price_table_has_the_required_models() -> None:
    t = load_prices()
    for name in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-5", "gpt-5-mini"]:
        t.get(name)
    groq = t.get("llama-3.3-70b")
    assert (groq.input, groq.output) == (0.59, 0.79)
    assert t.get("embedded-llm") == groq
    assert t.date
    with pytest.raises(KeyError, match="no price for model"):
        t.get("gpt-17")


def test_parse_kv_and_fingerprint() -> None:
    assert parse_kv(["hint_tokens=32", "mode = prefill"]) == {"hint_tokens": "32", "mode": "prefill"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_kv(["hint_tokens"])
    m = ModelConfig("llamacpp:a", "free")
    base = RunConfig("gsm8k", "llm", {}, m, m, limit=5)
    assert base.fingerprint() == RunConfig("gsm8k", "llm", {}, m, m, limit=5, batch_size=3).fingerprint()
    assert base.fingerprint() != RunConfig("gsm8k", "llm", {}, m, m, limit=6).fingerprint()
    keyed = ModelConfig("openai:gpt-4o", "gpt-4o", {"api_key": "sk-secret", "base_url": "http://x"})
    assert "sk-secret" not in json.dumps(RunConfig("gsm8k", "llm", {}, m, keyed).measured())


def test_run_files_share_one_mode(tmp_path: Path) -> None:
    """manifest.json and summary.json (written atomically) get the mode samples.jsonl gets (was 0600)."""
    import stat

    from shepherd_bench.store import RunStore

    store = RunStore(tmp_path / "run")
    store.open({"fingerprint": "f"}, "f")
    store.append([{"query_id": "q", "correct": True}])
    store.write_summary({"n": 1})
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (store.manifest_path, store.samples_path,
                                                               store.summary_path)}
    assert len(set(modes.values())) == 1, modes
