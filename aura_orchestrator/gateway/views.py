"""Gateway views: translate, run the pipeline, render in OpenAI's shapes. Nothing else.

Same Bearer keys and the same error table as the REST API; errors in OpenAI's body
shape (`render_error` is what the shared exception handler calls).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass

from adrf.views import APIView as AsyncAPIView
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.db import db
from aura_orchestrator.gateway import render
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
    events: AsyncIterator[bytes] | None = None
    stream: pipeline.OperationStream | None = None


def _failure(result: pipeline.OperationResult, headers: dict[str, str]) -> ChatReply:
    error = result.error
    headers = {**headers, **error.headers}
    if error.status >= 500:
        # The chain was already retried with backoff and fallback: an SDK retrying on top
        # would multiply the attempts (the OpenAI SDKs honour this header).
        headers["x-should-retry"] = "false"
    return ChatReply(status=error.status, headers=headers, body=render.error_body(error))


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
        )
        if stream.error is not None:
            return _failure(stream.result, headers)
        return ChatReply(
            status=200,
            headers={
                **headers,
                "Content-Type": SSE_CONTENT_TYPE,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
            events=render.sse_events(stream, include_usage=call.include_usage),
            stream=stream,
        )
    result = await pipeline.execute(call.operation, principal=principal)
    headers = render.aura_headers(
        operation_id=result.operation_id,
        session_id=session_id,
        cache_hit=result.was_cached,
        budget=result.budget,
        cost=result.telemetry["estimated_cost"],
    )
    if result.error is not None:
        return _failure(result, headers)
    return ChatReply(status=200, headers=headers, body=render.completion_body(result))


class ChatCompletionsView(GatewayView):
    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT},
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


class ModelListView(GatewayView):
    @extend_schema(
        responses={200: OpenApiTypes.OBJECT}, tags=["gateway"], operation_id="v1_models_list"
    )
    async def get(self, request):
        """Configured models: each bare name (routed over every provider serving it) and
        each `provider/model` (pinned to that provider)."""
        return Response({"object": "list", "data": await db(gateway_model_list)})


class ModelDetailView(GatewayView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, tags=["gateway"])
    async def get(self, request, model_id: str):
        for entry in await db(gateway_model_list):
            if entry["id"] == model_id:
                return Response(entry)
        raise errors.UnknownModel(f"Model '{model_id[:200]}' is not configured.")
