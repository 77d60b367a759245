"""The OpenAPI description of `POST /v1/embeddings`. Schema only: `embeddings.py` parses
the body and shapes the answer."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from aura_orchestrator.gateway import embeddings

_TOKENS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": embeddings.MAX_TOKEN_ID},
    "minItems": 1,
    "maxItems": embeddings.MAX_INPUTS,
}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "maxItems": embeddings.MAX_INPUTS,
            },
            _TOKENS,
            {
                "type": "array",
                "items": _TOKENS,
                "minItems": 1,
                "maxItems": embeddings.MAX_INPUTS,
            },
        ],
    }
)
class _InputField(serializers.JSONField):
    """A text, texts, one token array or token arrays."""


@extend_schema_field(
    {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}
)
class _VectorField(serializers.JSONField):
    """Floats, or base64 of little-endian float32 (`encoding_format: base64`)."""


class EmbeddingsInputSerializer(serializers.Serializer):
    """OpenAI's embeddings body. Other fields are passed to the provider as they are."""

    model = serializers.CharField(
        max_length=200, help_text="A configured model or `provider/model` (GET /v1/models)."
    )
    input = _InputField()
    dimensions = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=embeddings.MAX_DIMENSIONS
    )
    encoding_format = serializers.ChoiceField(
        choices=embeddings.ENCODINGS, required=False, allow_null=True, help_text="Default float."
    )
    user = serializers.CharField(required=False, allow_null=True, max_length=256)


class EmbeddingSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["embedding"])
    index = serializers.IntegerField()
    embedding = _VectorField()


class EmbeddingUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class EmbeddingListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    # A declared field named like Serializer.data (see schema.OpenAIModelListSerializer).
    data = EmbeddingSerializer(many=True)  # type: ignore[assignment]
    model = serializers.CharField()
    usage = EmbeddingUsageSerializer(help_text="What this request was billed (0 on a hit).")


EMBEDDINGS_DESCRIPTION = (
    "Vectors from the model's providers, in the order of the route chain (fallback on "
    "failure); routes of a kind without an embeddings API (anthropic) are skipped. Budgets, "
    "cache and telemetry as for chat; the operation type defaults to `rag_retrieval`. The "
    "provider's `data` is returned as it sent it."
)
