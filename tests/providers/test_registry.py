"""Adapter lookup by provider kind, and the kinds' declarations."""

from __future__ import annotations

import pytest

from aura_orchestrator.providers import (
    KINDS,
    SPECS,
    ProviderKindSpec,
    UnknownProviderKind,
    get_adapter,
    kind_spec,
    supports_native_json_schema,
)
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


def test_each_adapter_declares_its_kind_once():
    """The registry is the list of adapters: each declares one kind, no kind twice, and
    KINDS and SPECS follow the adapters' order."""
    assert len(set(KINDS)) == len(KINDS)
    assert tuple(spec.kind for spec in SPECS) == KINDS
    for spec in SPECS:
        assert isinstance(spec, ProviderKindSpec)
        assert get_adapter(spec.kind).spec is spec
        assert kind_spec(spec.kind) is spec


def test_only_openai_compatible_providers_take_a_json_schema_natively():
    assert supports_native_json_schema("openai") is True
    assert supports_native_json_schema("anthropic") is False


@pytest.mark.parametrize("ask", [kind_spec, supports_native_json_schema])
def test_an_unknown_kind_has_no_declaration(ask):
    """Asking about an unregistered kind is refused like get_adapter refuses it."""
    with pytest.raises(UnknownProviderKind, match="gemini"):
        ask("gemini")
