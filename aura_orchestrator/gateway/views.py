"""Gateway views: translate, run the pipeline, render in OpenAI's shapes. Nothing else.

Same Bearer keys and the same error table as the REST API; errors in OpenAI's body
shape (`render_error` is what the shared exception handler calls).
"""

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from adrf.views import APIView as AsyncAPIView
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.response import Response

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api import openapi
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.db import db
from aura_orchestrator.gateway import render, translate
from aura_orchestrator.gateway.selectors import gateway_model_list
from aura_orchestrator.gateway.translate import ChatCall, chat_call_from
from budgets.validators import SESSION_ID_MAX_LENGTH, SESSION_ID_RULE
from presets.operation_types import OperationType

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


def _failure(error: errors.AuraError, headers: dict[str, str]) -> ChatReply:
    """The reply of a failed operation (its result's `error`)."""
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
            return _failure(stream.error, headers)
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
        return _failure(result.error, headers)
    return ChatReply(status=200, headers=headers, body=render.completion_body(result))


# --- Schema only: the OpenAPI description of the bodies (`translate.py` validates them) ---


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["text"]},
                        "text": {"type": "string"},
                    },
                    "required": ["type", "text"],
                },
            },
        ],
    }
)
class _ContentField(serializers.JSONField):
    """A string, or text parts (images, audio and files are refused)."""


@extend_schema_field(
    {
        "nullable": True,
        "oneOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "maxItems": 4,
            },
        ],
    }
)
class _StopField(serializers.JSONField):
    """A string or up to 4 strings."""


class ChatMessageInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=list(translate.ROLES))
    content = _ContentField(
        help_text="Required, as OpenAI requires it; only an assistant message may leave it out."
    )


class StreamOptionsInputSerializer(serializers.Serializer):
    include_usage = serializers.BooleanField(required=False, allow_null=True)


class JsonSchemaFormatInputSerializer(serializers.Serializer):
    name = serializers.CharField(required=False)
    schema = serializers.DictField(help_text="A JSON Schema the answer must match.")
    strict = serializers.BooleanField(required=False, allow_null=True)


class ResponseFormatInputSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="text, json_object or json_schema.")
    json_schema = JsonSchemaFormatInputSerializer(
        required=False, help_text="With `type: json_schema`; the answer is validated against it."
    )


class ChatCompletionInputSerializer(serializers.Serializer):
    """OpenAI's chat-completions body, as far as this gateway carries it. Fields it does
    not know are ignored; what it cannot honour (tools, `n` > 1, images) is a 400."""

    model = serializers.CharField(
        max_length=200, help_text="A configured model or `provider/model` (GET /v1/models)."
    )
    messages = serializers.ListField(
        child=ChatMessageInputSerializer(), min_length=1, max_length=translate.MAX_MESSAGES
    )
    temperature = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0, max_value=2.0
    )
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    max_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=translate.MAX_TOKENS_LIMIT
    )
    max_completion_tokens = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=translate.MAX_TOKENS_LIMIT,
        help_text="Wins over `max_tokens`.",
    )
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1)
    stop = _StopField(required=False)
    stream = serializers.BooleanField(
        required=False, allow_null=True, help_text="true: server-sent events."
    )
    stream_options = StreamOptionsInputSerializer(required=False, allow_null=True)
    response_format = ResponseFormatInputSerializer(required=False, allow_null=True)
    metadata = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        allow_null=True,
        help_text="`session_id`, `operation_type`, `budget`, `enable_cache` (the X-Aura-… "
        "headers win over them).",
    )
    user = serializers.CharField(required=False, allow_null=True, max_length=256)


class ChatCompletionMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["assistant"])
    content = serializers.CharField(allow_null=True)
    refusal = serializers.CharField(allow_null=True)


class ChatCompletionChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatCompletionMessageSerializer()
    logprobs = serializers.DictField(allow_null=True)
    finish_reason = serializers.CharField(help_text="stop, length, content_filter, …")


class ChatCompletionUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ChatCompletionSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChatCompletionChoiceSerializer(many=True)
    usage = ChatCompletionUsageSerializer(help_text="What this request was billed (0 on a hit).")
    system_fingerprint = serializers.CharField(allow_null=True)


class ChatCompletionEventSerializer(serializers.Serializer):
    """One server-sent event of a streamed answer."""

    event = serializers.CharField(required=False)
    # A declared field named like Serializer.data: DRF's metaclass collects it; the stubs
    # see an override of the property.
    data = serializers.CharField(  # type: ignore[assignment]
        help_text="A `chat.completion.chunk` object as JSON; with "
        "`stream_options.include_usage`, a last chunk with empty `choices` and `usage`; then "
        "`[DONE]`. A provider failing mid-stream ends it with an error object "
        '(`{"error": {…}}`) instead.'
    )


class OpenAIModelSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="A bare model name or `provider/model`.")
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class OpenAIModelListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = OpenAIModelSerializer(many=True)  # type: ignore[assignment]  # a field, as above


def _header(name: str, kind, description: str, **kwargs) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.HEADER, description=description, **kwargs)


CHAT_REQUEST_HEADERS = [
    _header(
        translate.SESSION_HEADER,
        {"type": "string", "minLength": 1, "maxLength": SESSION_ID_MAX_LENGTH},
        f"The session to charge ({SESSION_ID_RULE}); default `gateway-<key prefix>`.",
    ),
    _header(
        translate.OPERATION_TYPE_HEADER,
        OpenApiTypes.STR,
        "The operation type whose preset applies (PascalCase accepted too).",
        enum=OperationType.values,
    ),
    _header(
        translate.BUDGET_HEADER,
        {"type": "string", "minLength": 1, "maxLength": 100},
        "A named budget constraint.",
    ),
    _header(
        translate.ENABLE_CACHE_HEADER,
        OpenApiTypes.STR,
        "Use the cache (default: the preset's setting).",
        enum=["true", "false"],
    ),
]
# On answers; also on the failures of calls that reached the pipeline (402, 502, 504…).
_ANSWERED = [200]
CHAT_RESPONSE_HEADERS = [
    _header("X-Aura-Operation-Id", OpenApiTypes.UUID, "The operation.", response=_ANSWERED),
    _header("X-Aura-Session-Id", OpenApiTypes.STR, "The session charged.", response=_ANSWERED),
    _header(
        "X-Aura-Cache",
        OpenApiTypes.STR,
        "Served from the cache?",
        enum=["hit", "miss"],
        response=_ANSWERED,
    ),
    _header("X-Aura-Cost", OpenApiTypes.STR, "USD charged, 6 decimals.", response=_ANSWERED),
    _header(
        "X-Aura-Budget-Remaining-Cost",
        OpenApiTypes.STR,
        "USD left under the session's cost cap (when capped).",
        response=_ANSWERED,
    ),
    _header(
        "X-Aura-Budget-Remaining-Tokens",
        OpenApiTypes.INT,
        "Tokens left under the session's token cap (when capped).",
        response=_ANSWERED,
    ),
    _header(
        "x-should-retry",
        OpenApiTypes.STR,
        "`false`: the chain was already retried with backoff and fallback.",
        enum=["false"],
        response=[502, 503, 504],
    ),
]
_ANSWER = (
    "A `chat.completion` (`application/json`); with `stream: true`, server-sent events "
    "(`text/event-stream`): one `chat.completion.chunk` per event, then `[DONE]`."
)
_CHUNK_EXAMPLE = (
    '{"id":"chatcmpl-7d0b…","object":"chat.completion.chunk","created":1767225600,'
    '"model":"gpt-4o-mini","system_fingerprint":null,"choices":[{"index":0,'
    '"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}'
)


class AnswerAsOpenAIDoes(BaseContentNegotiation):
    """JSON (or SSE with `stream: true`) whatever `Accept` says, as OpenAI answers: SSE
    clients send `Accept: text/event-stream`, which no DRF renderer matches."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)


class ChatCompletionsView(GatewayView):
    content_negotiation_class = AnswerAsOpenAIDoes

    @extend_schema(
        request=ChatCompletionInputSerializer,
        parameters=[*CHAT_REQUEST_HEADERS, *CHAT_RESPONSE_HEADERS, *openapi.ERROR_HEADERS],
        responses={
            (200, "application/json"): OpenApiResponse(
                ChatCompletionSerializer, description=_ANSWER
            ),
            (200, SSE_CONTENT_TYPE): OpenApiResponse(
                ChatCompletionEventSerializer,
                description=_ANSWER,
                examples=[
                    OpenApiExample("A chunk", value={"data": _CHUNK_EXAMPLE}),
                    OpenApiExample("The end", value={"data": "[DONE]"}),
                ],
            ),
            # No 406: JSON or SSE whatever Accept says (AnswerAsOpenAIDoes).
            **{
                status: response
                for status, response in openapi.gateway_errors(
                    *openapi.JSON_BODY, *openapi.PIPELINE
                ).items()
                if status != 406
            },
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
        return Response({"object": "list", "data": await db(gateway_model_list)})


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
        for entry in await db(gateway_model_list):
            if entry["id"] == model_id:
                return Response(entry)
        raise errors.UnknownModel(f"Model '{model_id[:200]}' is not configured.")
