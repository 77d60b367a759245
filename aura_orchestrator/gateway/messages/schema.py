"""The OpenAPI description of `/v1/messages` and `/v1/messages/count_tokens`: Anthropic's
shapes, loosely (blocks as objects; the parser in translate.py says what is taken)."""

from rest_framework import serializers

from aura_orchestrator.api import openapi
from aura_orchestrator.gateway.messages.render import error_body


class MessagesInputSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=200, help_text="A configured model (GET /v1/models).")
    max_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000)
    messages = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        help_text="user/assistant turns; content a string or blocks: text, image (base64 or "
        "url source), tool_use (assistant), tool_result (user); thinking blocks are dropped.",
    )
    system = serializers.JSONField(required=False, help_text="A string or text blocks.")
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="{name, description, input_schema}"
    )
    tool_choice = serializers.DictField(required=False, help_text="auto | any | tool | none.")
    stop_sequences = serializers.ListField(
        child=serializers.CharField(), required=False, max_length=4
    )
    temperature = serializers.FloatField(required=False, min_value=0, max_value=1)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    top_k = serializers.IntegerField(required=False, min_value=0, help_text="Anthropic routes.")
    thinking = serializers.DictField(required=False, help_text="Anthropic routes only.")
    metadata = serializers.DictField(required=False, help_text="`user_id` only.")
    stream = serializers.BooleanField(required=False)


class CountTokensInputSerializer(MessagesInputSerializer):
    max_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    stream = None  # type: ignore[assignment]


class MessageUsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_creation_input_tokens = serializers.IntegerField()
    cache_read_input_tokens = serializers.IntegerField()


class MessageSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=["message"])
    role = serializers.ChoiceField(choices=["assistant"])
    model = serializers.CharField()
    content = serializers.ListField(child=serializers.DictField(), help_text="text, tool_use.")
    stop_reason = serializers.CharField()
    stop_sequence = serializers.CharField(allow_null=True)
    usage = MessageUsageSerializer()


class MessageEventSerializer(serializers.Serializer):
    """One server-sent event of a streamed message."""

    event = serializers.CharField()
    data = serializers.CharField(help_text="The event's object as JSON.")  # type: ignore[assignment]


class TokenCountSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    estimate = serializers.BooleanField(
        help_text="true: our own count; false: the Anthropic provider's exact count."
    )


class AnthropicErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="Anthropic's error type.")
    message = serializers.CharField()
    code = serializers.CharField(help_text="Our machine code.")
    param = serializers.CharField(required=False, help_text="The field at fault (400).")


class AnthropicErrorSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["error"])
    error = AnthropicErrorDetailSerializer()


def messages_errors(*statuses: int | tuple[int, str]) -> dict:
    """Documented failures in Anthropic's shape (no 406: JSON or SSE whatever Accept says)."""
    responses = openapi.shaped_errors(AnthropicErrorSerializer, error_body, *statuses)
    return {status: response for status, response in responses.items() if status != 406}
