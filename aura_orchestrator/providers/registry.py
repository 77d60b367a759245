"""The provider kinds: one adapter each, in the order forms and commands list them.

Adding a kind = an adapter class with its `spec` (`base.ProviderKindSpec`) + its entry in
`ADAPTERS`. The rest derives from this list: `catalog.models.ProviderKind` (choices, so
the admin, `configure_provider --kind` and `provider_configure`), the price catalogue of
`catalog/pricing.py`, the pipeline's native JSON-schema question, the simulator's shapes.
"""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import Embedder, ProviderAdapter, ProviderKindSpec
from .openai_compat import OpenAICompatAdapter

ADAPTERS: tuple[ProviderAdapter, ...] = (OpenAICompatAdapter(), AnthropicAdapter())

_BY_KIND: dict[str, ProviderAdapter] = {adapter.spec.kind: adapter for adapter in ADAPTERS}

KINDS: tuple[str, ...] = tuple(_BY_KIND)
SPECS: tuple[ProviderKindSpec, ...] = tuple(adapter.spec for adapter in ADAPTERS)
_EMBEDDERS: dict[str, Embedder] = {
    kind: adapter for kind, adapter in _BY_KIND.items() if isinstance(adapter, Embedder)
}


class UnknownProviderKind(KeyError):
    pass


def get_adapter(kind: str) -> ProviderAdapter:
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise UnknownProviderKind(
            f"unknown provider kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def kind_spec(kind: str) -> ProviderKindSpec:
    """The declaration of `kind`; UnknownProviderKind when no adapter serves it."""
    return get_adapter(kind).spec


def supports_native_json_schema(kind: str) -> bool:
    """Whether a provider of `kind` takes a JSON schema as `response_format` (the pipeline
    then sends the request's response_schema along); UnknownProviderKind if unregistered."""
    return kind_spec(kind).native_json_schema


def get_embedder(kind: str) -> Embedder | None:
    """The adapter of `kind` if that kind serves embeddings (None: it has no such API)."""
    return _EMBEDDERS.get(kind)
