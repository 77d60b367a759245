"""Provider-neutral request/response types, the adapter protocol and the error taxonomy.

Pure Python: adapters translate vendor wire formats and vendor errors into these types, so
the pipeline never sees an httpx exception or a vendor-specific body.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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


# Anthropic's prompt-caching marker (`{"type": "ephemeral"}`), carried verbatim on the
# blocks that had it: Anthropic routes send it on, OpenAI-kind ones drop it (OpenAI
# caches prompts by itself).
CacheControl = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    cache_control: CacheControl | None = None


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image: an http(s) URL, or a `data:` URL whose base64 payload is the image."""

    url: str
    detail: str | None = None  # auto | low | high (OpenAI's); None: the provider's default
    cache_control: CacheControl | None = None

    @property
    def inline(self) -> tuple[str, str] | None:
        """(media type, base64 data) of a `data:` URL; None for an http(s) URL."""
        if not self.url.startswith("data:"):
            return None
        header, _, data = self.url[5:].partition(",")
        return header.removesuffix(";base64"), data


@dataclass(frozen=True, slots=True)
class OtherPart:
    """A part the pipeline does not interpret (`input_audio`, `file`): passed verbatim to
    the kinds that take it (`ProviderAdapter.refusal` says which do not)."""

    type: str
    body: dict[str, Any]  # the part as the client sent it

    @property
    def thinking(self) -> bool:
        """An Anthropic thinking block of an assistant turn: the model's own reasoning,
        sent back verbatim to Anthropic routes (which want it in tool-use conversations)
        and dropped by the others (it is not input)."""
        return self.type in THINKING_BLOCKS


# Anthropic's thinking block types: kept as `OtherPart`s of an assistant message.
THINKING_BLOCKS = ("thinking", "redacted_thinking")

ContentPart = TextPart | ImagePart | OtherPart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for (OpenAI's `tool_calls[]`, Anthropic's `tool_use`)."""

    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it (Anthropic's `input` serialised)

    def body(self) -> dict[str, Any]:
        """OpenAI's shape, the one our answers use whatever the provider."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    # The text: a string content, or its text parts joined by newlines. What token
    # counts, cache keys and telemetry read; providers get `parts` when there are any.
    content: str
    # The content as parts, when it had any part that is not text (in order, text included).
    parts: tuple[ContentPart, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None
    cache_control: CacheControl | None = None  # a tool message's (Anthropic's tool_result)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is its arguments' JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache_control: CacheControl | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: str  # auto | none | required | function
    name: str | None = None  # the function, when mode is "function"


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
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Every other field of an OpenAI body (seed, logprobs, logit_bias, next year's fields),
    # verbatim: OpenAI-compatible kinds send it on, others map what they can or refuse it.
    extra: dict[str, Any] = field(default_factory=dict)
    # HTTP headers the client asked to pass on (name, value), validated by the front that
    # took them: the kinds they mean something to send them (Anthropic: `anthropic-beta`),
    # the others drop them.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a provider kind cannot take a request: the parameter (a body path) and why."""

    param: str
    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int  # all prompt tokens, cached ones included
    tokens_out: int  # all completion tokens, reasoning ones included
    cached_tokens_in: int = 0  # the part of tokens_in served from the provider's prompt cache
    reasoning_tokens: int = 0  # the part of tokens_out the model spent thinking
    # The part of tokens_in written to the provider's prompt cache (Anthropic's
    # cache_creation_input_tokens, priced above input; OpenAI reports none).
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CompletionResult:
    content: str  # choice 0's text
    usage: Usage | None  # None when the provider reported none
    model: str  # the model the provider says served the request
    finish_reason: str | None
    raw: dict[str, Any]  # parsed provider body
    tool_calls: tuple[ToolCall, ...] = ()  # choice 0's
    # Every choice in OpenAI's shape (index, message, logprobs, finish_reason), whatever
    # the vendor: what the gateway answers. Empty: one plain text choice (content).
    choices: tuple[dict[str, Any], ...] = ()
    # Top-level answer fields we do not produce ourselves (system_fingerprint,
    # service_tier, usage details), passed back to the client.
    passthrough: dict[str, Any] = field(default_factory=dict)


# OpenAI's embeddings `input`: a text, texts, one token array or token arrays.
EmbeddingInputValue = str | list[str] | list[int] | list[list[int]]


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    input: EmbeddingInputValue  # as the client sent it, so the provider sees the same shape
    dimensions: int | None = None
    encoding_format: str | None = None  # float | base64; None: the provider's default
    user: str | None = None
    timeout_seconds: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, verbatim


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    # The provider's `data` list verbatim (index, embedding as floats or base64 text):
    # passed back untouched, so a base64 answer reaches the client byte for byte.
    data: list[dict[str, Any]]
    usage: Usage | None  # tokens_out 0; None when the provider reported none
    model: str  # the model the provider says served the request


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


class ProviderSecretRefused(ProviderRequestRejected):
    """Raised before any request: the provider's key variable is not allowed
    (AURA_PROVIDER_SECRET_ENV) or its stored key cannot be decrypted. Its `code` is
    `provider_secret_refused`, the code of the operation's error when it is the last."""


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

    def refusal(self, request: CompletionRequest) -> Refusal | None:
        """What of `request` this kind cannot carry (None: all of it). Asked before any
        call: a route that refuses is skipped, and a request no route takes is a 400."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """An adapter whose kind has an embeddings API. Kinds without one (Anthropic) do not
    implement it: their routes are skipped for embeddings (`registry.get_embedder`)."""

    async def embed(
        self,
        client: httpx.AsyncClient | httpx.AsyncBaseTransport,
        config: ProviderConfig,
        request: EmbeddingRequest,
    ) -> EmbeddingResult: ...
