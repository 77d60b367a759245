"""The gateway's OpenAPI description: request and response bodies, headers, examples.
Schema only: `translate.py` parses the bodies and `render.py` shapes the answers."""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from aura_orchestrator.api import chat_schema
from aura_orchestrator.api.serializers import FunctionCallSerializer, ToolCallSerializer
from aura_orchestrator.gateway import translate
from budgets.validators import END_USER_MAX_LENGTH, SESSION_ID_MAX_LENGTH, SESSION_ID_RULE
from presets.operation_types import OperationType


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


def _json(schema: dict[str, Any], **kwargs: Any) -> serializers.JSONField:
    """A field whose OpenAPI schema is written out (the chat format's, api/chat_schema.py);
    a class of its own, as DRF copies field instances through their constructor."""
    field_class = type("SchemaJsonField", (serializers.JSONField,), {})
    return extend_schema_field(schema)(field_class)(**kwargs)


_OPTIONAL: dict[str, Any] = {"required": False, "allow_null": True}
_RESPONSE_FORMAT = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["text", "json_object"]}},
            "required": ["type"],
        },
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["json_schema"]},
                "json_schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "schema": {
                            "type": "object",
                            "additionalProperties": {},
                            "description": "A JSON Schema the answer must match.",
                        },
                        "strict": {"type": "boolean", "nullable": True},
                    },
                    "required": ["schema"],
                },
            },
            "required": ["type", "json_schema"],
        },
    ],
    "description": "`json_object` is passed on; `json_schema` is passed on and the answer "
    "validated against it (one corrective retry, then 422).",
}


def _typed_extra(name: str, types: tuple[type, ...]) -> serializers.Field:
    """A field of translate.JSON_TYPES that the gateway does not read: its JSON type is
    checked, its value passed on verbatim."""
    note = {
        "help_text": "Passed on verbatim to OpenAI-compatible providers; an Anthropic route "
        "cannot take it (skipped; 400 when no route can).",
        **_OPTIONAL,
    }
    kind = types[-1]
    if kind is bool:
        return serializers.BooleanField(**note)
    if kind is int:
        if name == "top_logprobs":
            return serializers.IntegerField(min_value=0, max_value=20, **note)
        return serializers.IntegerField(**note)
    if kind is float:
        return serializers.FloatField(**note)
    if kind is str:
        return serializers.CharField(allow_blank=True, **note)
    if kind is list:
        return serializers.ListField(child=serializers.JSONField(), **note)
    return serializers.DictField(**note)


class StreamOptionsInputSerializer(serializers.Serializer):
    include_usage = serializers.BooleanField(required=False, allow_null=True)


class ChatCompletionInputSerializer(serializers.Serializer):
    """OpenAI's chat-completions body (gateway/translate.py parses it). The fields below
    are checked; any other field is passed on to the provider verbatim (OpenAI-compatible
    kinds take it; a kind that cannot is skipped, and no route left is a 400 naming it)."""

    model = serializers.CharField(
        max_length=200, help_text="A configured model or `provider/model` (GET /v1/models)."
    )
    messages = _json(
        chat_schema.MESSAGES, help_text="One object per message; its `role` picks its shape."
    )
    temperature = serializers.FloatField(**_OPTIONAL, min_value=0.0, max_value=2.0)
    top_p = serializers.FloatField(**_OPTIONAL, min_value=0.0, max_value=1.0)
    max_tokens = serializers.IntegerField(
        **_OPTIONAL, min_value=1, max_value=translate.MAX_TOKENS_LIMIT
    )
    max_completion_tokens = serializers.IntegerField(
        **_OPTIONAL,
        min_value=1,
        max_value=translate.MAX_TOKENS_LIMIT,
        help_text="Wins over `max_tokens`.",
    )
    n = serializers.IntegerField(
        **_OPTIONAL,
        min_value=1,
        max_value=translate.MAX_CHOICES,
        help_text="Choices; the budget reserves n times max_tokens.",
    )
    stop = _StopField(required=False)
    stream = serializers.BooleanField(**_OPTIONAL, help_text="true: server-sent events.")
    stream_options = StreamOptionsInputSerializer(**_OPTIONAL)
    response_format = _json(_RESPONSE_FORMAT, **_OPTIONAL)
    tools = _json(chat_schema.TOOLS, **_OPTIONAL)
    tool_choice = _json(chat_schema.TOOL_CHOICE, **_OPTIONAL)
    parallel_tool_calls = serializers.BooleanField(**_OPTIONAL)
    functions = _json(chat_schema.FUNCTIONS, **_OPTIONAL)
    function_call = _json(chat_schema.FUNCTION_CHOICE, **_OPTIONAL)
    metadata = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        **_OPTIONAL,
        help_text="`session_id`, `operation_type`, `budget`, `enable_cache` (the X-Aura-… "
        "headers win over them).",
    )
    user = serializers.CharField(**_OPTIONAL, max_length=256)


# The typed extras (seed, logprobs, penalties, ...): declared from translate's type table.
for _name, _types in translate.JSON_TYPES.items():
    if _name not in ChatCompletionInputSerializer._declared_fields:
        ChatCompletionInputSerializer._declared_fields[_name] = _typed_extra(_name, _types)


class OpenFields(OpenApiSerializerExtension):
    """The chat body's component says `additionalProperties: true`: fields the gateway
    does not know are passed on, not refused."""

    target_class = ChatCompletionInputSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        return {**schema, "additionalProperties": True}


class ChatCompletionMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["assistant"])
    content = serializers.CharField(allow_null=True)
    refusal = serializers.CharField(allow_null=True, required=False)
    tool_calls = ToolCallSerializer(many=True, required=False, allow_null=True)
    function_call = FunctionCallSerializer(
        required=False, help_text="Asked with legacy `functions`: the first tool call."
    )


class LogprobsSerializer(serializers.Serializer):
    content = serializers.ListField(child=serializers.DictField(), allow_null=True)
    refusal = serializers.ListField(child=serializers.DictField(), allow_null=True, required=False)


class ChatCompletionChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatCompletionMessageSerializer()
    logprobs = LogprobsSerializer(allow_null=True, help_text="With `logprobs: true`.")
    finish_reason = serializers.CharField(
        help_text="stop, length, tool_calls, function_call, content_filter, …"
    )


class ChatCompletionUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    prompt_tokens_details = serializers.DictField(
        required=False, help_text="The provider's (cached_tokens, …), on a live answer."
    )
    completion_tokens_details = serializers.DictField(
        required=False, help_text="The provider's (reasoning_tokens, …), on a live answer."
    )


class ChatCompletionSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChatCompletionChoiceSerializer(many=True)
    usage = ChatCompletionUsageSerializer(help_text="What this request was billed (0 on a hit).")
    system_fingerprint = serializers.CharField(allow_null=True)
    service_tier = serializers.CharField(
        required=False, allow_null=True, help_text="The provider's, when it sends one."
    )


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
    _header(
        translate.END_USER_HEADER,
        {"type": "string", "minLength": 1, "maxLength": END_USER_MAX_LENGTH},
        "Your application's end user, whose spend budgets apply (default: the body's `user`).",
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
        "USD left under the tightest cost cap: the session's or a spend budget's.",
        response=_ANSWERED,
    ),
    _header(
        "X-Aura-Budget-Remaining-Tokens",
        OpenApiTypes.INT,
        "Tokens left under the tightest token cap: the session's or a spend budget's.",
        response=_ANSWERED,
    ),
    _header(
        "X-Aura-Budget-Warning",
        OpenApiTypes.STR,
        "Soft caps this call passed (session or spend budgets), `; `-separated.",
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
