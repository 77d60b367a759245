"""Provider-neutral request/response types, the adapter protocol and the error taxonomy.

Pure Python: adapters translate vendor wire formats and vendor errors into these types, so
the pipeline never sees an httpx exception or a vendor-specific body.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


@dataclass(frozen=True, slots=True)
class ProviderKindSpec:
    """What the project knows about one provider kind, declared once by its adapter.

    Everything kind-specific outside the adapter reads it through `registry`: the choices
    of `catalog.models.ProviderKind` (kind, label), the price catalogue the kind's models
    are looked up in (`catalog/pricing.py`), whether the pipeline asks for a JSON schema
    natively, and the simulator's wire shapes.
    """

    kind: str  # stored in Provider.kind (at most 16 characters), ProviderConfig.kind
    label: str  # ProviderKind's label: the admin's select, the choices' order follows the registry
    # The genai-prices provider id its models are priced under; None says "no catalogue of
    # its own": prices are then looked up by model name alone.
    price_catalogue: str | None
    # Takes OpenAI's `response_format: {"type": "json_schema", ...}`: the pipeline sends a
    # request's response_schema along, so the provider constrains the answer itself (the
    # pipeline validates it either way).
    native_json_schema: bool


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Where and how to reach one configured provider (built by the pipeline from DB rows)."""

    name: str
    kind: str
    base_url: str
    # Secrets: kept out of repr so a logged config or a traceback never leaks them.
    api_key: str | None = field(repr=False)
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    response_format: dict[str, Any] | None = None  # OpenAI response_format, passed through as is
    n: int | None = None
    user: str | None = None
    timeout_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int  # all prompt tokens, cached ones included
    tokens_out: int
    cached_tokens_in: int = 0  # the part of tokens_in served from the provider's prompt cache


@dataclass(frozen=True, slots=True)
class CompletionResult:
    content: str
    usage: Usage | None  # None when the provider reported none
    model: str  # the model the provider says served the request
    finish_reason: str | None
    raw: dict[str, Any]  # parsed provider body


@dataclass(frozen=True, slots=True)
class StreamChunk:
    delta: str  # text delta, "" for role-only, usage-only and final chunks
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: dict[str, Any] | None = None  # an OpenAI chat.completion.chunk dict, whatever the vendor


class ProviderError(Exception):
    """A failed provider call. `retryable` tells the pipeline whether another attempt may help."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        self.code = code


class ProviderRateLimited(ProviderError):
    """HTTP 429; `retry_after` holds the provider's hint in seconds when it sent one."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """5xx, overloaded (529), connection refused/reset, broken protocol."""

    retryable = True


class ProviderTimeout(ProviderError):
    """No answer within the request's timeout."""

    retryable = True


class ProviderBadResponse(ProviderError):
    """A 2xx whose body is not the expected JSON (or a broken stream)."""

    retryable = True


class ProviderRequestRejected(ProviderError):
    """Any other 4xx: sending the same request again will fail the same way."""

    retryable = False


class ProviderAuthError(ProviderRequestRejected):
    """401/403: the key is wrong, revoked or lacks permission."""


class ProviderAdapter(Protocol):
    """One vendor wire format. Adapters are stateless and make exactly one attempt per call."""

    spec: ProviderKindSpec  # the kind it serves; registered in registry.ADAPTERS

    async def complete(
        self,
        client: httpx.AsyncClient | httpx.AsyncBaseTransport,
        config: ProviderConfig,
        request: CompletionRequest,
    ) -> CompletionResult: ...

    def stream(
        self,
        client: httpx.AsyncClient | httpx.AsyncBaseTransport,
        config: ProviderConfig,
        request: CompletionRequest,
    ) -> AsyncGenerator[StreamChunk, None]: ...
