"""`POST /v1/messages` and `/v1/messages/count_tokens`: translate, run, render. Nothing
else (the pipeline run is the chat gateway's `chat_reply`/`answered` machinery)."""

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.response import Response

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api import openapi
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.gateway.messages import render
from aura_orchestrator.gateway.messages.count import count_tokens
from aura_orchestrator.gateway.messages.schema import (
    CountTokensInputSerializer,
    MessageEventSerializer,
    MessageSerializer,
    MessagesInputSerializer,
    TokenCountSerializer,
    messages_errors,
)
from aura_orchestrator.gateway.messages.translate import messages_call_from
from aura_orchestrator.gateway.render import aura_headers
from aura_orchestrator.gateway.schema import CHAT_REQUEST_HEADERS, CHAT_RESPONSE_HEADERS
from aura_orchestrator.gateway.views import (
    SSE_CONTENT_TYPE,
    AnswerAsOpenAIDoes,
    ChatReply,
    GatewayView,
    answered,
    failure,
)

ANTHROPIC_HEADERS_NOTE = (
    "Authenticate with `x-api-key: <our key>` (what the Anthropic SDK sends) or "
    "`Authorization: Bearer`; `anthropic-version` is accepted (the Anthropic adapter sends "
    "its own), `anthropic-beta` (comma-separated beta names) is passed on to Anthropic-kind "
    "providers and dropped for the others."
)


class MessagesBaseView(GatewayView):
    content_negotiation_class = AnswerAsOpenAIDoes

    def render_error(self, error: errors.AuraError) -> dict:
        return render.error_body(error)


async def _reply(request) -> ChatReply:
    call = messages_call_from(
        body=request.data,
        headers=request.headers,
        default_session=f"gateway-{request.auth.prefix}",
    )
    principal = principal_of(request)
    if not call.stream:
        return await answered(call.operation, principal, render.message_body, render.error_body)
    stream = await pipeline.execute_stream(call.operation, principal=principal)
    headers = aura_headers(
        operation_id=stream.operation_id,
        session_id=call.operation.session_id,
        cache_hit=stream.was_cached,
        budget=stream.budget,
        cost=stream.result.telemetry["estimated_cost"] if stream.result else None,
        limits=stream.headers,
    )
    if stream.error is not None:
        return failure(stream.error, headers, render.error_body)
    return ChatReply(status=200, headers=headers, events=render.sse_events(stream), stream=stream)


class MessagesView(MessagesBaseView):
    @extend_schema(
        request=MessagesInputSerializer,
        parameters=[*CHAT_REQUEST_HEADERS, *CHAT_RESPONSE_HEADERS, *openapi.ERROR_HEADERS],
        responses={
            (200, "application/json"): MessageSerializer,
            (200, SSE_CONTENT_TYPE): OpenApiResponse(
                MessageEventSerializer,
                examples=[
                    OpenApiExample(
                        "message_stop",
                        value={"event": "message_stop", "data": '{"type": "message_stop"}'},
                    )
                ],
            ),
            **messages_errors(*openapi.JSON_BODY, *openapi.PIPELINE),
        },
        tags=["gateway"],
        operation_id="v1_messages_create",
        summary="Anthropic-compatible Messages (SSE with `stream: true`)",
        description=ANTHROPIC_HEADERS_NOTE,
    )
    async def post(self, request):
        reply = await _reply(request)
        if reply.events is not None:
            return StreamingHttpResponse(
                reply.events,
                status=200,
                content_type=SSE_CONTENT_TYPE,
                headers={**reply.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return Response(reply.body, status=reply.status, headers=reply.headers)


class CountTokensView(MessagesBaseView):
    @extend_schema(
        request=CountTokensInputSerializer,
        parameters=openapi.ERROR_HEADERS,
        responses={
            200: TokenCountSerializer,
            **messages_errors(*openapi.JSON_BODY, (404, "`model_not_found`: no such model.")),
        },
        tags=["gateway"],
        operation_id="v1_messages_count_tokens",
        summary="Count a Messages request's input tokens",
        description=ANTHROPIC_HEADERS_NOTE,
    )
    async def post(self, request):
        return Response(await count_tokens(request.data, request.headers))
