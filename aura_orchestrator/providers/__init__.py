"""Provider adapters: OpenAI-compatible and Anthropic upstreams behind one protocol.

httpx only, no Django: the pipeline builds `ProviderConfig`s from its models and calls
`get_adapter(config.kind).complete(get_transport(), config, request)`. Each adapter
declares its kind (`ProviderKindSpec`); `registry` lists the adapters, and the rest of the
project derives its kinds from it.
"""

from .base import (
    ChatMessage,
    CompletionRequest,
    CompletionResult,
    ProviderAdapter,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderConfig,
    ProviderError,
    ProviderKindSpec,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StreamChunk,
    Usage,
)
from .http import close_transports, get_transport
from .registry import (
    KINDS,
    SPECS,
    UnknownProviderKind,
    get_adapter,
    kind_spec,
    supports_native_json_schema,
)
from .retry import backoff_delay

__all__ = [
    "KINDS",
    "SPECS",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResult",
    "ProviderAdapter",
    "ProviderAuthError",
    "ProviderBadResponse",
    "ProviderConfig",
    "ProviderError",
    "ProviderKindSpec",
    "ProviderRateLimited",
    "ProviderRequestRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "StreamChunk",
    "UnknownProviderKind",
    "Usage",
    "backoff_delay",
    "close_transports",
    "get_adapter",
    "get_transport",
    "kind_spec",
    "supports_native_json_schema",
]
