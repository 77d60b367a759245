"""What one route is sent: its provider's configuration and the provider-neutral request,
and which routes of a chain can take a request at all (`ProviderAdapter.refusal`)."""

from typing import Any

from aura_orchestrator import errors
from aura_orchestrator.api.exceptions import invalid_field
from aura_orchestrator.catalog.secrets import env_secret
from aura_orchestrator.catalog.selectors import Route
from aura_orchestrator.crypto import SecretUnreadable
from aura_orchestrator.pipeline.types import OperationRequest
from aura_orchestrator.providers.base import (
    ChatMessage,
    CompletionRequest,
    ProviderConfig,
    ProviderSecretRefused,
    Refusal,
)
from aura_orchestrator.providers.registry import (
    get_adapter,
    get_embedder,
    supports_native_json_schema,
)
from presets.selectors import EffectivePreset

SECRET_REFUSED = "provider_secret_refused"


def provider_config(route: Route) -> ProviderConfig:
    """The route's provider as its adapter is given it, the key decrypted here (the stored
    one, else the allowed environment variable's value, read now). A variable that is not
    allowed is refused before anything is sent: the adapter never sees its value."""
    secret: str | None = None
    if route.api_key:
        try:
            secret = route.api_key.reveal()
        except SecretUnreadable as exc:
            raise ProviderSecretRefused(
                f"{route.provider_name}: {exc}", provider=route.provider_name, code=SECRET_REFUSED
            ) from None
    elif route.api_key_env:
        try:
            secret = env_secret(route.api_key_env)
        except ValueError as exc:
            raise ProviderSecretRefused(
                f"{route.provider_name}: api_key_env refused: {exc}",
                provider=route.provider_name,
                code=SECRET_REFUSED,
            ) from None
    return ProviderConfig(
        name=route.provider_name, kind=route.kind, base_url=route.base_url, api_key=secret
    )


def native_response_format(route: Route, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The `response_format` that asks the provider itself for `schema`, where its kind
    declares one (`ProviderKindSpec.native_json_schema`); None elsewhere. The answer is
    validated in any case (step 6)."""
    if not supports_native_json_schema(route.kind):
        return None
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def completion_request(
    request: OperationRequest,
    preset: EffectivePreset,
    route: Route,
    messages: list[ChatMessage] | tuple[ChatMessage, ...],
) -> CompletionRequest:
    response_format = request.response_format
    if response_format is None and request.response_schema is not None:
        response_format = native_response_format(route, request.response_schema)
    return CompletionRequest(
        model=route.model_name,
        messages=tuple(messages),
        temperature=preset.temperature,
        top_p=preset.top_p,
        max_tokens=preset.max_tokens,
        stop=request.stop,
        response_format=response_format,
        n=request.n,
        user=request.user,
        timeout_seconds=preset.timeout_seconds,
        tools=request.tools,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        extra=request.extra,
        headers=request.provider_headers,
    )


def refusal_of(route: Route, request: CompletionRequest) -> Refusal | None:
    return get_adapter(route.kind).refusal(request)


def capable_routes(
    request: OperationRequest, preset: EffectivePreset, chain: list[Route]
) -> tuple[list[Route], list[tuple[Route, Refusal]]]:
    """(the routes that can take `request`, those that cannot with why). A request no
    route can take is a 400 naming what the first route refused, before anything is
    reserved or sent. Plain requests skip the question: every kind takes them."""
    if request.plain or not chain:
        return chain, []
    capable, skipped = [], []
    for route in chain:
        refusal = refusal_of(route, completion_request(request, preset, route, request.messages))
        if refusal is None:
            capable.append(route)
        else:
            skipped.append((route, refusal))
    if not capable:
        raise nobody_takes(skipped)
    return capable, skipped


def embedding_routes(chain: list[Route]) -> tuple[list[Route], list[tuple[Route, Refusal]]]:
    """`capable_routes` for an embeddings request: the routes whose kind has an
    embeddings API (`registry.get_embedder`)."""
    capable, skipped = [], []
    for route in chain:
        if get_embedder(route.kind) is not None:
            capable.append(route)
        else:
            reason = f"Providers of kind {route.kind} have no embeddings API."
            skipped.append((route, Refusal("model", reason)))
    if not capable:
        raise nobody_takes(skipped)
    return capable, skipped


def nobody_takes(skipped: list[tuple[Route, Refusal]]) -> errors.InvalidRequest:
    """The 400 of a request no route of the chain can take: what the first refused."""
    refusal = skipped[0][1]
    names = ", ".join(dict.fromkeys(r.provider_name for r, _ in skipped))
    return invalid_field(
        refusal.param,
        f"{refusal.reason} No provider of the chain ({names}) can take this request.",
    )
