"""The CPU backend on the real Qwen2.5-Coder-0.5B (loaded once per session; a few short generations)."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.backends.base import GenRequest, Message
from shepherd_bench.backends.cache import CachedBackend, GenerationCache
from shepherd_bench.backends.llamacpp import LlamaCppBackend, LlamaCppSettings
from shepherd_bench.backends.models import KNOWN_MODELS, models_dir

SMALL = KNOWN_MODELS["qwen2.5-coder-0.5b"]
SETTINGS = LlamaCppSettings(n_parallel=2, n_ctx_per_slot=1024)
ADD = (Message("user", "Write a Python function add(a, b) that returns the sum of a and b."),)
HINT = "def add(a, b):\n    return"


@pytest.fixture(scope="session")
def small_backend() -> LlamaCppBackend:
    if not (models_dir() / SMALL.filename).is_file():
        pytest.skip(f"{SMALL.filename} not in {models_dir()} (run: python -c \"from shepherd_bench.backends.models "
                    f"import resolve_model; resolve_model('{SMALL.name}')\")")
    return LlamaCppBackend(SMALL.name, SETTINGS, progress=False)


def test_identity_pins_weights_and_template(small_backend: LlamaCppBackend) -> None:
    ident = small_backend.identity
    assert ident.kind == "llamacpp" and ident.model == SMALL.name and ident.revision == SMALL.sha256
    assert len(ident.chat_template_sha256) == 64


def test_plain_generation_is_greedy_deterministic(small_backend: LlamaCppBackend) -> None:
    req = GenRequest(ADD, max_tokens=8)
    a, b = small_backend.generate([req, req])
    (c,) = small_backend.generate([req])
    assert a.ok and a.text and a.output_tokens == 8 and a.finish_reason == "length"
    assert a.text == b.text == c.text
    assert a.token_ids is not None and len(a.token_ids) == 8 and a.tokens is not None
    assert a.input_tokens == len(small_backend.render_prompt(req))


def test_prefix_is_continued_without_a_second_bos(small_backend: LlamaCppBackend) -> None:
    req = GenRequest(ADD, max_tokens=6, prefix=HINT, logprobs=True)
    ids = small_backend.render_prompt(req)
    text = small_backend.detokenize(ids)
    assert text.endswith("<|im_start|>assistant\n" + HINT)  # assistant turn open, prefix verbatim
    assert text.count("<|im_start|>assistant") == 1 and "<|endoftext|>" not in text  # Qwen adds no BOS
    assert ids.count(ids[0]) == text.count("<|im_start|>")  # one start token per turn, nothing doubled
    (res,) = small_backend.generate([req])
    assert res.ok and not res.text.startswith("def add")  # the prefix is not repeated
    assert res.text.replace(" ", "").startswith("a+b"), res.text
    assert res.input_tokens == len(ids)
    assert res.token_logprobs is not None and len(res.token_logprobs) == res.output_tokens
    assert all(lp <= 0 for lp in res.token_logprobs)


def test_batch_of_several_with_stop_and_sampling(small_backend: LlamaCppBackend) -> None:
    math = (Message("user", "What is 2 + 3? Reply with the number only."),)
    reqs = [
        GenRequest(math, max_tokens=8, stop=("\n",)),
        GenRequest(ADD, max_tokens=5, prefix=HINT),
        GenRequest(ADD, max_tokens=5, temperature=0.9, seed=7),
        GenRequest(ADD, max_tokens=5, temperature=0.9, seed=7),
    ]
    res = small_backend.generate(reqs, progress=True)
    assert all(r.ok for r in res), [r.error for r in res]
    assert "5" in res[0].text and "\n" not in res[0].text
    assert res[2].text == res[3].text  # same seed, same sample


def test_a_too_long_request_is_an_error_not_an_exception(small_backend: LlamaCppBackend) -> None:
    (res,) = small_backend.generate([GenRequest(ADD, max_tokens=5000)])
    assert not res.ok and res.input_tokens > 0
    # the fix is named with a size that fits: prompt + 5000, rounded up to the next multiple of 1024
    m = re.search(r"--llm-opt n_ctx_per_slot=(\d+)", res.error or "")
    assert m, res.error
    size = int(m.group(1))
    assert size % 1024 == 0 and res.input_tokens + 5000 <= size < res.input_tokens + 5000 + 1024


def test_an_interrupted_batch_keeps_its_finished_calls_in_the_cache(small_backend: LlamaCppBackend,
                                                                    tmp_path: Path) -> None:
    """Each finished call is stored as it arrives (``streams_results``), not when the whole batch returns:
    a batch interrupted after its first call finished leaves that call in the cache, and the rerun asks
    the model only for the rest."""

    class InterruptedCache(GenerationCache):
        """Stores the first finished call, then is 'killed': worker threads store concurrently (two
        slots can finish in the same decoding step), so the count is taken under a lock."""

        stores = 0
        count_lock = threading.Lock()

        def put_many(self, rows: list[Any]) -> None:
            with self.count_lock:
                self.stores += 1
                first = self.stores == 1
            if not first:
                raise KeyboardInterrupt("killed mid-batch")
            super().put_many(rows)

    reqs = [GenRequest(ADD, max_tokens=4, temperature=0.9, seed=s) for s in range(4)]
    assert small_backend.streams_results
    cache = InterruptedCache(tmp_path / "cache.sqlite")
    with pytest.raises(KeyboardInterrupt):
        CachedBackend(small_backend, cache).generate(reqs)
    cache.close()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 1

    rerun = CachedBackend(small_backend, GenerationCache(tmp_path / "cache.sqlite"))
    res = rerun.generate(reqs)
    assert all(r.ok for r in res) and sum(r.cached for r in res) == 1
    assert [r.text for r in res] == [r.text for r in small_backend.generate(reqs)]


def test_speculative_decoding_loads_a_draft_and_keys_the_cache_apart(small_backend: LlamaCppBackend) -> None:
    """The 0.5B drafting for itself (cheap): the draft loads, answers come back, and the identity names
    the draft, so speculative outputs (which can differ in low-order floats on CPU, see
    benchmarks/bench_grid.py --speculative) never share cache entries with plain decoding."""
    drafted = LlamaCppBackend(SMALL.name, LlamaCppSettings(n_parallel=2, n_ctx_per_slot=1024,
                                                           draft_model=SMALL.name, draft_max=4), progress=False)
    (res,) = drafted.generate([GenRequest(ADD, max_tokens=16)])
    assert res.ok and res.text and 0 < res.output_tokens <= 16
    plain, spec = small_backend.identity, drafted.identity
    assert spec.revision == plain.revision and spec.key() != plain.key()
    assert dict(spec.extra)["draft_model"] == SMALL.sha256
    drafted.close()
