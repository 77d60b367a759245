"""Gateway views: translate, run the pipeline, render in OpenAI's shapes. Nothing else.

Same Bearer keys and the same error table as the REST API; errors in OpenAI's body
shape (`render_error` is what the shared exception handler calls).
"""

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from adrf.views import APIView as AsyncAPIView
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.response import Response

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api import openapi
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.db import db
from aura_orchestrator.gateway import render
from aura_orchestrator.gateway.embeddings import embedding_operation_from, embeddings_body
from aura_orchestrator.gateway.embeddings_schema import (
    EMBEDDINGS_DESCRIPTION,
    EmbeddingListSerializer,
    EmbeddingsInputSerializer,
)
from aura_orchestrator.gateway.schema import (
    ANSWER_DESCRIPTION,
    CHAT_REQUEST_HEADERS,
    CHAT_RESPONSE_HEADERS,
    CHUNK_EXAMPLE,
    ChatCompletionEventSerializer,
    ChatCompletionInputSerializer,
    ChatCompletionSerializer,
    OpenAIModelListSerializer,
    OpenAIModelSerializer,
)
from aura_orchestrator.gateway.selectors import gateway_model_list
from aura_orchestrator.gateway.translate import ChatCall, chat_call_from

SSE_CONTENT_TYPE = "text/event-stream"


class GatewayView(AsyncAPIView):
    def render_error(self, error: errors.AuraError) -> dict:
        return render.error_body(error)


@dataclass(slots=True)
class ChatReply:
    """One chat-completions response, whoever sends it: this view or the fast path
    (aura_orchestrator/fastpath). `events` set: an SSE body to stream (status 200)."""

    status: int
    headers: dict[str, str]
    body: dict | None = None
    events: AsyncGenerator[bytes, None] | None = None
    stream: pipeline.OperationStream | None = None


def failure(
    error: errors.AuraError,
    headers: dict[str, str],
    error_of: Callable[[errors.AuraError], dict] = render.error_body,
) -> ChatReply:
    """The reply of a failed operation (its result's `error`; `error_of` its body shape)."""
    headers = {**headers, **error.headers}
    if error.status >= 500:
        # The chain was already retried with backoff and fallback: an SDK retrying on top
        # would multiply the attempts (the OpenAI SDKs honour this header).
        headers["x-should-retry"] = "false"
    return ChatReply(status=error.status, headers=headers, body=error_of(error))


async def chat_reply(call: ChatCall, *, principal: pipeline.Principal) -> ChatReply:
    """Run a translated chat call through the pipeline; its response, streamed or not."""
    session_id = call.operation.session_id
    if call.stream:
        stream = await pipeline.execute_stream(call.operation, principal=principal)
        headers = render.aura_headers(
            operation_id=stream.operation_id,
            session_id=session_id,
            cache_hit=stream.was_cached,
            budget=stream.budget,
            cost=stream.result.telemetry["estimated_cost"] if stream.result else None,
            limits=stream.headers,
        )
        if stream.error is not None:
            return failure(stream.error, headers)
        return ChatReply(
            status=200,
            headers={
                **headers,
                "Content-Type": SSE_CONTENT_TYPE,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
            events=render.sse_events(
                stream, include_usage=call.include_usage, legacy_functions=call.legacy_functions
            ),
            stream=stream,
        )
    return await answered(
        call.operation,
        principal,
        lambda result: render.completion_body(result, legacy_functions=call.legacy_functions),
    )


async def answered(
    operation: pipeline.OperationRequest,
    principal: pipeline.Principal,
    body_of: Callable[[pipeline.OperationResult], dict],
    error_of: Callable[[errors.AuraError], dict] = render.error_body,
) -> ChatReply:
    """Run an operation whose answer is one JSON body (`body_of` its success, `error_of`
    its failure)."""
    result = await pipeline.execute(operation, principal=principal)
    headers = render.aura_headers(
        operation_id=result.operation_id,
        session_id=operation.session_id,
        cache_hit=result.was_cached,
        budget=result.budget,
        cost=result.telemetry["estimated_cost"],
        limits=result.headers,
    )
    if result.error is not None:
        return failure(result.error, headers, error_of)
    return ChatReply(status=200, headers=headers, body=body_of(result))


class AnswerAsOpenAIDoes(BaseContentNegotiation):
    """JSON (or SSE with `stream: true`) whatever `Accept` says, as OpenAI answers: SSE
    clients send `Accept: text/event-stream`, which no DRF renderer matches."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)


# The failures of a POST that runs an operation. No 406: JSON (or SSE) whatever Accept
# says (AnswerAsOpenAIDoes).
OPERATION_ERRORS = {
    status: response
    for status, response in openapi.gateway_errors(*openapi.JSON_BODY, *openapi.PIPELINE).items()
    if status != 406
}


class ChatCompletionsView(GatewayView):
    content_negotiation_class = AnswerAsOpenAIDoes

    @extend_schema(
        request=ChatCompletionInputSerializer,
        parameters=[*CHAT_REQUEST_HEADERS, *CHAT_RESPONSE_HEADERS, *openapi.ERROR_HEADERS],
        responses={
            (200, "application/json"): OpenApiResponse(
                ChatCompletionSerializer, description=ANSWER_DESCRIPTION
            ),
            (200, SSE_CONTENT_TYPE): OpenApiResponse(
                ChatCompletionEventSerializer,
                description=ANSWER_DESCRIPTION,
                examples=[
                    OpenApiExample("A chunk", value={"data": CHUNK_EXAMPLE}),
                    OpenApiExample("The end", value={"data": "[DONE]"}),
                ],
            ),
            **OPERATION_ERRORS,
        },
        tags=["gateway"],
        operation_id="v1_chat_completions_create",
        summary="OpenAI-compatible chat completions (SSE with `stream: true`)",
    )
    async def post(self, request):
        call = chat_call_from(
            body=request.data,
            headers=request.headers,
            default_session=f"gateway-{request.auth.prefix}",
        )
        reply = await chat_reply(call, principal=principal_of(request))
        if reply.events is not None:
            headers = dict(reply.headers)
            content_type = headers.pop("Content-Type")
            return StreamingHttpResponse(
                reply.events, status=reply.status, content_type=content_type, headers=headers
            )
        return Response(reply.body, status=reply.status, headers=reply.headers)


class EmbeddingsView(GatewayView):
    content_negotiation_class = AnswerAsOpenAIDoes

    @extend_schema(
        request=EmbeddingsInputSerializer,
        parameters=[*CHAT_REQUEST_HEADERS, *CHAT_RESPONSE_HEADERS, *openapi.ERROR_HEADERS],
        responses={
            200: EmbeddingListSerializer,
            **OPERATION_ERRORS,
        },
        tags=["gateway"],
        operation_id="v1_embeddings_create",
        summary="OpenAI-compatible embeddings",
        description=EMBEDDINGS_DESCRIPTION,
    )
    async def post(self, request):
        operation = embedding_operation_from(
            body=request.data,
            headers=request.headers,
            default_session=f"gateway-{request.auth.prefix}",
        )
        reply = await answered(operation, principal_of(request), embeddings_body)
        return Response(reply.body, status=reply.status, headers=reply.headers)


class ModelListView(GatewayView):
    @extend_schema(
        parameters=openapi.ERROR_HEADERS,
        responses={200: OpenAIModelListSerializer, **openapi.gateway_errors()},
        tags=["gateway"],
        operation_id="v1_models_list",
    )
    async def get(self, request):
        """Configured models: each bare name (routed over every provider serving it) and
        each `provider/model` (pinned to that provider)."""
        models = await db(gateway_model_list, api_key=request.auth)
        return Response({"object": "list", "data": models})


class ModelDetailView(GatewayView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "model_id",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="A bare model name or `provider/model`.",
            ),
            *openapi.ERROR_HEADERS,
        ],
        responses={
            200: OpenAIModelSerializer,
            **openapi.gateway_errors((404, "`model_not_found`: no such model is configured.")),
        },
        tags=["gateway"],
    )
    async def get(self, request, model_id: str):
        for entry in await db(gateway_model_list, api_key=request.auth):
            if entry["id"] == model_id:
                return Response(entry)
        raise errors.UnknownModel(f"Model '{model_id[:200]}' is not configured.")
