"""Provider adapters: OpenAI-compatible and Anthropic upstreams behind one protocol.

httpx only, no Django: the pipeline builds `ProviderConfig`s from its models and calls
`get_adapter(config.kind).complete(get_transport(), config, request)`.
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
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StreamChunk,
    Usage,
)
from .http import close_transports, get_transport
from .registry import KINDS, UnknownProviderKind, get_adapter
from .retry import backoff_delay

__all__ = [
    "KINDS",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResult",
    "ProviderAdapter",
    "ProviderAuthError",
    "ProviderBadResponse",
    "ProviderConfig",
    "ProviderError",
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
]
