"""vLLM prompt building without vllm: token ids of the chat template, assistant turn left open."""

from __future__ import annotations

from typing import Any

from shepherd_bench.backends.base import GenRequest, Message
from shepherd_bench.backends.vllm_backend import build_prompt_ids, sampling_kwargs

BOS = 1


class FakeTokenizer:
    """A ChatML-like template over a byte vocabulary that emits BOS itself, as Llama templates do."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> list[int]:
        self.calls.append(kw)
        assert kw["tokenize"] is True
        if kw.get("continue_final_message"):
            assert kw["add_generation_prompt"] is False and messages[-1]["role"] == "assistant"
        text = "".join(
            f"<{m['role']}>{m['content']}" + ("" if kw.get("continue_final_message") and i == len(messages) - 1 else "</>")
            for i, m in enumerate(messages)
        )
        if kw.get("add_generation_prompt"):
            text += "<assistant>"
        return [BOS] + [b + 10 for b in text.encode()]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - 10 for i in ids if i != BOS).decode()


def test_prefix_is_continued_in_an_open_assistant_turn() -> None:
    tok = FakeTokenizer()
    req = GenRequest((Message("user", "add"),), max_tokens=5, prefix="def add(a, b):\n    return")
    ids = build_prompt_ids(tok, req)
    assert tok.decode(ids) == "<user>add</><assistant>def add(a, b):\n    return"
    assert ids.count(BOS) == 1 and ids[0] == BOS
    assert tok.calls[-1] == {"tokenize": True, "add_generation_prompt": False, "continue_final_message": True}


def test_no_prefix_uses_the_generation_prompt() -> None:
    tok = FakeTokenizer()
    ids = build_prompt_ids(tok, GenRequest((Message("user", "hi"),), max_tokens=5))
    assert tok.decode(ids) == "<user>hi</><assistant>"
    assert tok.calls[-1] == {"tokenize": True, "add_generation_prompt": True}


def test_batch_encoding_results_are_accepted() -> None:
    class Enc(FakeTokenizer):
        def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> Any:
            return {"input_ids": super().apply_chat_template(messages, **kw)}

    assert build_prompt_ids(Enc(), GenRequest((Message("user", "x"),), max_tokens=1))[0] == BOS


def test_sampling_always_sets_max_tokens() -> None:
    kw = sampling_kwargs(GenRequest((Message("user", "x"),), max_tokens=300, stop=("\n\n",), logprobs=True))
    assert kw["max_tokens"] == 300 and kw["stop"] == ["\n\n"] and kw["logprobs"] == 0
    assert kw["temperature"] == 0.0 and kw["seed"] == 0
