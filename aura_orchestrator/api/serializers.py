"""Output shapes of the REST API (they document OpenAPI); request bodies are parsed by the
tables of `api/bodies.py`."""

from rest_framework import serializers

from budgets.caps import CAPS, UNITS, Unit


def _amount(unit: Unit, *, required: bool = True) -> serializers.Field:
    """A nullable amount of `unit` in public units (USD with 6 places, or tokens)."""
    if unit.money:
        return serializers.DecimalField(
            max_digits=14, decimal_places=6, allow_null=True, required=required
        )
    return serializers.IntegerField(allow_null=True, required=required)


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


# Built from budgets/caps.py: what the tightest ledger cap of each unit still allows.
BudgetOutputSerializer = type(
    "BudgetOutputSerializer",
    (serializers.Serializer,),
    {
        "session_id": serializers.CharField(),
        "total_tokens_used": serializers.IntegerField(),
        "total_cost_accrued": serializers.DecimalField(max_digits=14, decimal_places=6),
        "operation_count": serializers.IntegerField(),
        "tokens_reserved": serializers.IntegerField(required=False),
        "cost_reserved": serializers.DecimalField(max_digits=14, decimal_places=6, required=False),
        **{unit.remaining: _amount(unit, required=False) for unit in UNITS},
        "scope": serializers.CharField(
            required=False,
            help_text="With spend budgets: the budget nearest its cap (`project:search`, "
            "`api_key:ingest`, `end_user:u-42`); `remaining_*` are the least any allows.",
        ),
        "period": serializers.ChoiceField(choices=["none", "day", "week", "month"], required=False),
        "resets_at": serializers.DateTimeField(allow_null=True, required=False),
        "warnings": serializers.ListField(child=serializers.CharField()),
    },
)


class FunctionCallSerializer(serializers.Serializer):
    name = serializers.CharField()
    arguments = serializers.CharField(help_text="JSON text.")


class ToolCallSerializer(serializers.Serializer):
    """A tool call the model asks for, in OpenAI's shape whatever the provider."""

    id = serializers.CharField()
    type = serializers.ChoiceField(choices=["function"])
    function = FunctionCallSerializer()


class ExecuteOutputSerializer(serializers.Serializer):
    operation_id = serializers.UUIDField(allow_null=True)
    success = serializers.BooleanField()
    content = serializers.CharField(allow_null=True)
    tool_calls = ToolCallSerializer(
        many=True, help_text="The tool calls the answer asks for ([] when none)."
    )
    was_cached = serializers.BooleanField()
    error_code = serializers.CharField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)
    telemetry = TelemetryOutputSerializer(allow_null=True)
    budget = BudgetOutputSerializer(allow_null=True)


# The session's budget body (budgets.selectors.BudgetStatus.body): the caps of
# budgets/caps.py, then what the tightest ledger cap of each unit still allows.
SessionBudgetSerializer = type(
    "SessionBudgetSerializer",
    (serializers.Serializer,),
    {
        "session_id": serializers.CharField(),
        "total_tokens_used": serializers.IntegerField(),
        "total_cost_accrued": serializers.DecimalField(max_digits=14, decimal_places=6),
        "tokens_reserved": serializers.IntegerField(),
        "cost_reserved": serializers.DecimalField(max_digits=14, decimal_places=6),
        "operation_count": serializers.IntegerField(),
        **{cap.field: _amount(cap.unit) for cap in CAPS},
        "enforce_hard_limits": serializers.BooleanField(),
        "constraint": serializers.CharField(allow_null=True),
        **{unit.remaining: _amount(unit) for unit in UNITS},
        "created_at": serializers.DateTimeField(),
        "last_activity_at": serializers.DateTimeField(),
    },
)


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


class SpendBudgetUsageSerializer(serializers.Serializer):
    """One spend budget in its current period (budgets/usage.py)."""

    scope = serializers.CharField(
        help_text="`project:P`, `api_key:K`, `end_user:U` (also a default applied to U); "
        "`+provider:X`/`+model:M` when narrowed. As a 402's `details.scope` names it."
    )
    budget_id = serializers.IntegerField()
    period = serializers.ChoiceField(choices=["none", "day", "week", "month"])
    period_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField(allow_null=True, help_text="Null for period none.")
    enforce_hard_limits = serializers.BooleanField()
    max_tokens = serializers.IntegerField(allow_null=True)
    max_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    tokens_used = serializers.IntegerField()
    cost_used = serializers.DecimalField(max_digits=14, decimal_places=6)
    tokens_reserved = serializers.IntegerField()
    cost_reserved = serializers.DecimalField(max_digits=14, decimal_places=6)
    remaining_tokens = serializers.IntegerField(
        allow_null=True, help_text="Cap - used - reserved, at least 0; null without a token cap."
    )
    remaining_cost = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        allow_null=True,
        help_text="Cap - used - reserved, at least 0; null without a cost cap.",
    )
    provider = serializers.CharField(allow_null=True, help_text="Counts only this provider.")
    model = serializers.CharField(allow_null=True, help_text="Counts only this model.")


class UsageSerializer(serializers.Serializer):
    project = serializers.CharField()
    api_key = serializers.CharField()
    end_user = serializers.CharField(allow_null=True)
    budgets = SpendBudgetUsageSerializer(many=True)
