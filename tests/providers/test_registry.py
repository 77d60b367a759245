"""Adapter lookup by provider kind."""

from __future__ import annotations

import pytest

from aura_orchestrator.providers import KINDS, UnknownProviderKind, get_adapter
from aura_orchestrator.providers.anthropic import AnthropicAdapter
from aura_orchestrator.providers.openai_compat import OpenAICompatAdapter


def test_every_kind_has_an_adapter():
    assert KINDS == ("openai", "anthropic")
    assert isinstance(get_adapter("openai"), OpenAICompatAdapter)
    assert isinstance(get_adapter("anthropic"), AnthropicAdapter)


def test_unknown_kind_is_a_key_error():
    with pytest.raises(UnknownProviderKind) as caught:
        get_adapter("gemini")
    assert isinstance(caught.value, KeyError)
    assert "gemini" in str(caught.value)
