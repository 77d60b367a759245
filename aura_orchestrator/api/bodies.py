"""The request bodies of the REST endpoints, one table each (`api/fields.py`): the DRF
views and the fast front (`fastpath/app.py`) parse with these, and the OpenAPI schema is
generated from them (`api/openapi.py`, `ShapeSchema`).

`execute_request` turns an execute body into the pipeline's `OperationRequest`.
"""

from dataclasses import replace

from aura_orchestrator import pipeline
from aura_orchestrator.api import chat_kinds
from aura_orchestrator.api.fields import (
    Boolean,
    Field,
    Integer,
    JsonSchema,
    ListOf,
    Money,
    Nested,
    Number,
    Operation,
    Shape,
    Text,
    slug,
)
from aura_orchestrator.providers.base import ChatMessage
from budgets.caps import CAPS
from budgets.services import Caps
from budgets.validators import (
    END_USER_MAX_LENGTH,
    END_USER_RULE,
    SESSION_ID_MAX_LENGTH,
    SESSION_ID_RULE,
    is_valid_end_user,
    is_valid_session_id,
)

MAX_PROMPT_CHARS = 2_000_000
MAX_PROVIDERS = 10


def _session_rule(value: str) -> str | None:
    return None if is_valid_session_id(value) else f"Must be {SESSION_ID_RULE}."


SESSION_ID = Text(SESSION_ID_MAX_LENGTH, rule=_session_rule)
PROMPT = Text(MAX_PROMPT_CHARS, trim=False)
SYSTEM_PROMPT = Text(MAX_PROMPT_CHARS, trim=False, blank=True)
MODEL = Text(200)
PROVIDERS = ListOf(slug(64), max_items=MAX_PROVIDERS)

# Each cap of the caps table, in its unit: money in USD, tokens a positive count.
BUDGET_CONSTRAINT = Shape(
    "BudgetConstraint",
    {
        **{
            cap.field: Field(Money() if cap.unit.money else Integer(low=1), description=cap.label)
            for cap in CAPS
        },
        "enforce_hard_limits": Field(Boolean(), null=False, default=True),
    },
)

CUSTOM_PRESET = Shape(
    "CustomPreset",
    {
        "temperature": Field(Number(0.0, 2.0), null=False),
        "top_p": Field(Number(0.0, 1.0), null=False),
        "max_tokens": Field(Integer(1, 1_000_000), null=False),
        "timeout_seconds": Field(Number(1.0, 600.0), null=False),
        "max_retries": Field(Integer(0, 10), null=False),
    },
    description="Any of the five tuned parameters; the preset gives the others.",
)


def _one_budget(data: dict) -> tuple[str, str] | None:
    if data.get("budget") and data.get("budget_constraint"):
        return "budget", "Give either `budget` (a named constraint) or `budget_constraint`."
    return None


def _system_prompt_with_messages(data: dict) -> tuple[str, str] | None:
    if data.get("messages") is not None and data.get("system_prompt") is not None:
        return "system_prompt", "With `messages`, give the system message among them."
    return None


def _execute_rule(data: dict) -> tuple[str, str] | None:
    return (
        _system_prompt_with_messages(data)
        or _one_budget(data)
        or chat_kinds.tool_choice_problem(data)
    )


EXECUTE = Shape(
    "ExecuteInput",
    {
        "session_id": Field(SESSION_ID, required=True),
        "operation_type": Field(Operation(), required=True),
        "prompt": Field(PROMPT, null=False, description="Required unless `messages` is given."),
        "system_prompt": Field(SYSTEM_PROMPT, description="With `prompt` only."),
        "messages": Field(
            chat_kinds.MESSAGES,
            description="The conversation, in the gateway's format (instead of `prompt`).",
        ),
        "tools": Field(chat_kinds.TOOLS),
        "tool_choice": Field(chat_kinds.TOOL_CHOICE),
        "enable_cache": Field(Boolean(), default=None),
        "cache_ttl_seconds": Field(Integer(1, 30 * 86400)),
        "budget_constraint": Field(Nested(BUDGET_CONSTRAINT)),
        "budget": Field(slug(100), description="A budget constraint's name (admin)."),
        "end_user": Field(
            Text(
                END_USER_MAX_LENGTH,
                trim=False,
                rule=lambda v: None if is_valid_end_user(v) else f"Must be {END_USER_RULE}.",
            ),
            description="Your application's end user: their spend budgets apply, and "
            "telemetry keeps the name.",
        ),
        "custom_preset": Field(Nested(CUSTOM_PRESET)),
        "providers": Field(PROVIDERS, description="The fallback chain, by provider name."),
        "model": Field(MODEL),
        "response_schema": Field(JsonSchema()),
    },
    rule=_execute_rule,
    one_of=("prompt", "messages"),
    description="Exactly one of `prompt` and `messages`.",
)

ESTIMATE = Shape(
    "EstimateInput",
    {
        "operation_type": Field(Operation(), required=True),
        "prompt": Field(PROMPT, required=True),
        "system_prompt": Field(SYSTEM_PROMPT),
        "model": Field(MODEL),
        "providers": Field(PROVIDERS),
        "custom_preset": Field(Nested(CUSTOM_PRESET)),
        "session_id": Field(SESSION_ID),
    },
)

CONSTRAINTS = Shape(
    "Constraints",
    {
        "max_tokens": Field(Integer(1, 1_000_000)),
        "max_cost": Field(Money()),
        "max_latency_seconds": Field(Number(1.0, 3600.0)),
        "prioritize_quality": Field(
            Boolean(),
            default=None,
            description="true: quality first (stay near the preset); false: cost first "
            "(trim); null: balanced.",
        ),
    },
)

OPTIMIZE = Shape(
    "OptimizeInput",
    {
        "operation_type": Field(Operation(), required=True),
        "constraints": Field(Nested(CONSTRAINTS)),
        "use_case": Field(Text(2000, trim=True, blank=True)),
        "use_llm": Field(Boolean(), null=False, default=False),
        "provider": Field(slug(64)),
    },
)


PARAMETERS = replace(
    CUSTOM_PRESET, name="Parameters", description="Any of the five tuned parameters."
)


def _base_or_type(data: dict) -> tuple[str, str] | None:
    if not data.get("base") and not data.get("operation_type"):
        return "base", "Give `base` parameters or an `operation_type` whose preset is base."
    return None


EXPLAIN = Shape(
    "ExplainInput",
    {
        "base": Field(Nested(PARAMETERS), description="Defaults to the operation type's preset."),
        "adjusted": Field(Nested(PARAMETERS), required=True, null=False),
        "operation_type": Field(Operation()),
        "reason": Field(Text(500, trim=True, blank=True)),
        "use_llm": Field(Boolean(), null=False, default=False),
        "provider": Field(slug(64)),
    },
    rule=_base_or_type,
)


def execute_request(body: object, *, source: str = "api") -> pipeline.OperationRequest:
    """The pipeline's request for an execute body, or InvalidRequest naming every bad
    field: Django's view and the fast front both build it here."""
    data = EXECUTE.parse(body)
    inline = data.get("budget_constraint")
    return pipeline.OperationRequest(
        session_id=data["session_id"],
        operation_type=data["operation_type"],
        messages=data.get("messages") or _prompt_messages(data),
        tools=data.get("tools") or (),
        tool_choice=data.get("tool_choice"),
        enable_cache=data.get("enable_cache"),
        cache_ttl_seconds=data.get("cache_ttl_seconds"),
        caps=Caps.inline(**inline) if inline else None,
        budget_name=data.get("budget"),
        end_user=data.get("end_user"),
        overrides=pipeline.PresetOverrides(**(data.get("custom_preset") or {})),
        providers=tuple(data["providers"]) if data.get("providers") else None,
        model=data.get("model"),
        response_schema=data.get("response_schema"),
        source=source,
    )


def _prompt_messages(data: dict) -> tuple[ChatMessage, ...]:
    """The simple form: `system_prompt` (when not blank), then `prompt`."""
    user = ChatMessage(role="user", content=data["prompt"])
    if data.get("system_prompt"):
        return ChatMessage(role="system", content=data["system_prompt"]), user
    return (user,)
