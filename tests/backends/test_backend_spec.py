"""Backends are named by one spec string."""

from __future__ import annotations

import pytest

from oyster.backends import from_spec
from oyster.backends.embedded import EmbeddedBackend
from oyster.backends.openai_compat import OpenAIBackend
from oyster.backends.transformers_backend import TransformersBackend
from oyster.errors import BackendError


def test_embedded_spec():
    b = from_spec("embedded")
    assert isinstance(b, EmbeddedBackend) and b.spec == "embedded"
    assert b.model_path.name.endswith(".gguf")
    assert from_spec("embedded:/models/x.gguf").spec == "embedded:/models/x.gguf"


def test_openai_spec_with_and_without_url(monkeypatch):
    b = from_spec("openai:qwen3-8b@http://127.0.0.1:8000/v1/")
    assert isinstance(b, OpenAIBackend)
    assert (b.model, b.base_url) == ("qwen3-8b", "http://127.0.0.1:8000/v1")
    assert from_spec(b.spec).spec == b.spec  # the spec recreates the backend
    monkeypatch.setenv("OYSTER_API_KEY", "sk-test")
    default = from_spec("openai:gpt-4o-mini")
    assert default.base_url == "https://api.openai.com/v1"  # type: ignore[attr-defined]
    # an '@' that does not start a URL belongs to the model name
    assert from_spec("openai:org@model").model == "org@model"  # type: ignore[attr-defined]


def test_hf_spec(tmp_path):
    b = from_spec(f"hf:{tmp_path}")
    assert isinstance(b, TransformersBackend) and b.spec == f"hf:{tmp_path}"


@pytest.mark.parametrize("spec", ["", "gpt4", "openai:", "hf:", "ollama:llama3"])
def test_bad_specs_say_what_is_accepted(spec):
    with pytest.raises(BackendError, match="openai:MODEL@URL"):
        from_spec(spec)


def test_an_option_the_backend_does_not_take_is_a_backend_error():
    with pytest.raises(BackendError, match="unexpected keyword"):
        from_spec("embedded", max_concurrency=3)


def test_a_missing_model_file_is_reported_on_first_use(tmp_path):
    b = from_spec(f"embedded:{tmp_path / 'none.gguf'}")  # constructing does no I/O
    with pytest.raises(BackendError, match="model file not found"):
        b.complete([])


def test_a_missing_checkpoint_directory_is_reported_on_first_use(tmp_path):
    b = from_spec(f"hf:{tmp_path / 'nothing'}")
    with pytest.raises(BackendError, match="no checkpoint directory"):
        b.complete([])
