"""The backend registry, spec parsing, and option validation (no model is loaded)."""

from __future__ import annotations

import pytest

from shepherd_bench.backends import backend_descriptions, backend_names, make_backend, parse_spec
from shepherd_bench.backends.llamacpp import LlamaCppBackend
from shepherd_bench.backends.openai_compat import MissingAPIKey, OpenAICompatBackend
from shepherd_bench.registry import UnknownName


def test_builtin_backends_are_listed_with_descriptions() -> None:
    assert {"llamacpp", "openai", "vllm"} <= set(backend_names())
    assert all(backend_descriptions()[n] for n in ("llamacpp", "openai", "vllm"))


def test_spec_parsing() -> None:
    assert parse_spec("llamacpp:/models/x.gguf") == ("llamacpp", "/models/x.gguf")
    assert parse_spec("vllm:Qwen/Qwen2.5-0.5B-Instruct") == ("vllm", "Qwen/Qwen2.5-0.5B-Instruct")
    assert parse_spec("llamacpp") == ("llamacpp", "")


def test_unknown_kind_suggests_a_name() -> None:
    with pytest.raises(UnknownName, match="did you mean 'openai'"):
        make_backend("opena:gpt-4o", "large")


def test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY_VAR", raising=False)
    with pytest.raises(MissingAPIKey, match="MY_KEY_VAR"):
        make_backend("openai:gpt-4o-mini", "large", {"api_key_env": "MY_KEY_VAR"})


def test_openai_options_and_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    b = make_backend("openai:gpt-4o-mini", "large", {"base_url": "http://127.0.0.1:9/v1", "concurrency": "3"})
    assert isinstance(b, OpenAICompatBackend) and b.settings.concurrency == 3
    assert b.identity.kind == "openai" and b.identity.base_url == "http://127.0.0.1:9/v1"
    assert "sk-secret-123" not in b.identity.key()
    with pytest.raises(ValueError, match="unknown openai option"):
        make_backend("openai:gpt-4o-mini", "large", {"bogus": 1})


def test_llamacpp_defaults_per_role_without_loading() -> None:
    small = make_backend("llamacpp", "small", {"n_parallel": 2})
    large = make_backend("llamacpp", "large")
    assert isinstance(small, LlamaCppBackend) and isinstance(large, LlamaCppBackend)
    assert small.model_spec == "qwen2.5-coder-0.5b" and large.model_spec == "qwen2.5-coder-1.5b"
    with pytest.raises(ValueError, match="unknown llamacpp option"):
        make_backend("llamacpp", "small", {"n_slots": 2})
    with pytest.raises(ValueError, match="unknown role"):
        make_backend("llamacpp", "medium")
