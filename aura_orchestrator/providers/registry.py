"""Adapter lookup by provider kind."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import ProviderAdapter
from .openai_compat import OpenAICompatAdapter

KINDS = ("openai", "anthropic")

_ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAICompatAdapter(),
    "anthropic": AnthropicAdapter(),
}


class UnknownProviderKind(KeyError):
    pass


def get_adapter(kind: str) -> ProviderAdapter:
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise UnknownProviderKind(
            f"unknown provider kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None
