"""The gateway's OpenAPI description: request and response bodies, headers, examples.
Schema only: `translate.py` parses the bodies and `render.py` shapes the answers."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from aura_orchestrator.api import chat
from aura_orchestrator.gateway import translate
from budgets.validators import SESSION_ID_MAX_LENGTH, SESSION_ID_RULE
from presets.operation_types import OperationType


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
    role = serializers.ChoiceField(choices=[*chat.ROLES, "function"])
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
        child=ChatMessageInputSerializer(), min_length=1, max_length=chat.MAX_MESSAGES
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
    n = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=translate.MAX_CHOICES
    )
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
ANSWER_DESCRIPTION = (
    "A `chat.completion` (`application/json`); with `stream: true`, server-sent events "
    "(`text/event-stream`): one `chat.completion.chunk` per event, then `[DONE]`."
)
CHUNK_EXAMPLE = (
    '{"id":"chatcmpl-7d0b…","object":"chat.completion.chunk","created":1767225600,'
    '"model":"gpt-4o-mini","system_fingerprint":null,"choices":[{"index":0,'
    '"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}'
)
