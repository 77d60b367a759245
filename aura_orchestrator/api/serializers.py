"""Input validation and output shapes of the REST API (outputs also document OpenAPI)."""

from rest_framework import serializers

from aura_orchestrator.api.jsonbody import schema_problem
from budgets.validators import SESSION_ID_MAX_LENGTH, SESSION_ID_RULE, is_valid_session_id
from presets.operation_types import OperationType, parse_operation_type

MAX_PROMPT_CHARS = 2_000_000


class OperationTypeField(serializers.CharField):
    """Accepts snake_case or the seed's PascalCase; yields an OperationType."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault(
            "help_text", "One of: " + ", ".join(OperationType.values) + " (PascalCase accepted)."
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        op = parse_operation_type(data)
        if op is None:
            raise serializers.ValidationError(
                f"Unknown operation type {str(data)[:64]!r}; expected one of "
                + ", ".join(OperationType.values)
                + "."
            )
        return op

    def to_representation(self, value):
        return str(value)


class SessionIdField(serializers.CharField):
    """A session id under the one rule of `budgets.validators`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", SESSION_ID_MAX_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not is_valid_session_id(value):
            raise serializers.ValidationError(f"Must be {SESSION_ID_RULE}.")
        return value


class BudgetConstraintSerializer(serializers.Serializer):
    max_tokens_per_operation = serializers.IntegerField(
        required=False, allow_null=True, min_value=1
    )
    max_cost_per_operation = serializers.DecimalField(
        max_digits=14, decimal_places=6, required=False, allow_null=True, min_value=0
    )
    max_tokens_per_session = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    max_cost_per_session = serializers.DecimalField(
        max_digits=14, decimal_places=6, required=False, allow_null=True, min_value=0
    )
    enforce_hard_limits = serializers.BooleanField(required=False, default=True)


class CustomPresetSerializer(serializers.Serializer):
    temperature = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    top_p = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    timeout_seconds = serializers.FloatField(required=False, min_value=1.0, max_value=600.0)
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=10)


class ExecuteInputSerializer(serializers.Serializer):
    session_id = SessionIdField()
    operation_type = OperationTypeField()
    prompt = serializers.CharField(max_length=MAX_PROMPT_CHARS, trim_whitespace=False)
    system_prompt = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=MAX_PROMPT_CHARS,
        trim_whitespace=False,
    )
    enable_cache = serializers.BooleanField(required=False, allow_null=True, default=None)
    cache_ttl_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=30 * 86400
    )
    budget_constraint = BudgetConstraintSerializer(required=False, allow_null=True)
    budget = serializers.SlugField(required=False, allow_null=True, max_length=100)
    custom_preset = CustomPresetSerializer(required=False, allow_null=True)
    providers = serializers.ListField(
        child=serializers.SlugField(max_length=64),
        required=False,
        allow_null=True,
        allow_empty=False,
        max_length=10,
    )
    model = serializers.CharField(required=False, allow_null=True, max_length=200)
    response_schema = serializers.JSONField(required=False, allow_null=True)

    def validate_response_schema(self, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON Schema object.")
        problem = schema_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs):
        if attrs.get("budget") and attrs.get("budget_constraint"):
            raise serializers.ValidationError(
                {"budget": "Give either `budget` (a named constraint) or `budget_constraint`."}
            )
        return attrs


class TelemetryOutputSerializer(serializers.Serializer):
    operation_id = serializers.UUIDField()
    session_id = serializers.CharField()
    operation_type = serializers.CharField()
    provider_name = serializers.CharField()
    model_name = serializers.CharField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    retry_count = serializers.IntegerField()
    latency_ms = serializers.IntegerField()
    success = serializers.BooleanField()
    cache_hit = serializers.BooleanField()
    estimated_cost = serializers.DecimalField(max_digits=14, decimal_places=6)
    started_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()
    temperature = serializers.FloatField(allow_null=True)
    top_p = serializers.FloatField(allow_null=True)
    max_tokens = serializers.IntegerField(allow_null=True)
    error_code = serializers.CharField(allow_blank=True)
    attempts = serializers.ListField(child=serializers.DictField())


class BudgetOutputSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    total_tokens_used = serializers.IntegerField()
    total_cost_accrued = serializers.DecimalField(max_digits=14, decimal_places=6)
    operation_count = serializers.IntegerField()
    tokens_reserved = serializers.IntegerField(required=False)
    cost_reserved = serializers.DecimalField(max_digits=14, decimal_places=6, required=False)
    remaining_tokens = serializers.IntegerField(allow_null=True, required=False)
    remaining_cost = serializers.DecimalField(
        max_digits=14, decimal_places=6, allow_null=True, required=False
    )
    warnings = serializers.ListField(child=serializers.CharField())


class ExecuteOutputSerializer(serializers.Serializer):
    operation_id = serializers.UUIDField(allow_null=True)
    success = serializers.BooleanField()
    content = serializers.CharField(allow_null=True)
    was_cached = serializers.BooleanField()
    error_code = serializers.CharField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)
    telemetry = TelemetryOutputSerializer(allow_null=True)
    budget = BudgetOutputSerializer(allow_null=True)


class SessionBudgetSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    total_tokens_used = serializers.IntegerField()
    total_cost_accrued = serializers.DecimalField(max_digits=14, decimal_places=6)
    tokens_reserved = serializers.IntegerField()
    cost_reserved = serializers.DecimalField(max_digits=14, decimal_places=6)
    operation_count = serializers.IntegerField()
    max_tokens_per_operation = serializers.IntegerField(allow_null=True)
    max_cost_per_operation = serializers.DecimalField(
        max_digits=14, decimal_places=6, allow_null=True
    )
    max_tokens_per_session = serializers.IntegerField(allow_null=True)
    max_cost_per_session = serializers.DecimalField(
        max_digits=14, decimal_places=6, allow_null=True
    )
    enforce_hard_limits = serializers.BooleanField()
    constraint = serializers.CharField(allow_null=True)
    remaining_tokens = serializers.IntegerField(allow_null=True)
    remaining_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    created_at = serializers.DateTimeField()
    last_activity_at = serializers.DateTimeField()


class PresetSerializer(serializers.Serializer):
    operation_type = serializers.CharField()
    description = serializers.CharField()
    temperature = serializers.FloatField()
    top_p = serializers.FloatField()
    max_tokens = serializers.IntegerField()
    timeout_seconds = serializers.FloatField()
    max_retries = serializers.IntegerField()
    cache_enabled = serializers.BooleanField()
    cache_ttl_seconds = serializers.IntegerField()
    is_customized = serializers.BooleanField()


class ErrorSerializer(serializers.Serializer):
    success = serializers.BooleanField(default=False)
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    details = serializers.DictField(required=False)
