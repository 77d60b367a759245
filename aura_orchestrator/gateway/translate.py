"""An OpenAI chat-completions body (plus our headers) → one `OperationRequest`.

What the request sets overrides the preset of its operation type; what it leaves out
comes from the preset. Anything no provider of the chain can honour faithfully is
refused with a 400 naming the parameter, never silently dropped. Messages and tools
are parsed by `api/chat.py` (shared with `/execute`); fields this gateway does not read
go to the provider verbatim (`OWN_FIELDS`).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from aura_orchestrator import errors
from aura_orchestrator.api.chat import (
    legacy_tools,
    parse_messages,
    parse_tool_choice,
    parse_tools,
)
from aura_orchestrator.api.exceptions import invalid_field
from aura_orchestrator.api.jsonbody import schema_problem
from aura_orchestrator.pipeline import OperationRequest, PresetOverrides
from aura_orchestrator.providers.base import Tool, ToolChoice
from budgets.validators import (
    END_USER_RULE,
    SESSION_ID_RULE,
    is_valid_end_user,
    is_valid_session_id,
)
from presets.operation_types import OperationType, parse_operation_type

SESSION_HEADER = "X-Aura-Session-Id"
OPERATION_TYPE_HEADER = "X-Aura-Operation-Type"
BUDGET_HEADER = "X-Aura-Budget"
ENABLE_CACHE_HEADER = "X-Aura-Enable-Cache"
END_USER_HEADER = "X-Aura-End-User"

MAX_TOKENS_LIMIT = 1_000_000
MAX_CHOICES = 128  # OpenAI's limit for `n`
# The body fields this gateway reads; every other field goes to the provider verbatim
# (`CompletionRequest.extra`): OpenAI-compatible kinds send it on, so next year's fields
# work without a release; other kinds map it or refuse it (`ProviderAdapter.refusal`).
OWN_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens",
        "stop", "response_format", "user", "metadata", "stream", "stream_options", "n",
        "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
    }
)  # fmt: skip
# The JSON types of the fields we know (name -> its JSON types), checked in this order
# before anything is sent: a value of the wrong type is as wrong here as at OpenAI.
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "seed": (int,),
    "frequency_penalty": (int, float),
    "presence_penalty": (int, float),
    "logit_bias": (dict,),
    "top_logprobs": (int,),
    "store": (bool,),
    "parallel_tool_calls": (bool,),
    "service_tier": (str,),
    "reasoning_effort": (str,),
    "modalities": (list,),
    "prediction": (dict,),
    "prompt_cache_key": (str,),
    "safety_identifier": (str,),
    "verbosity": (str,),
    "web_search_options": (dict,),
    "logprobs": (bool,),
    "n": (int,),
    "stream": (bool,),
    "stream_options": (dict,),
}
_JSON_TYPE = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}
_JSON_TYPE |= {dict: "an object", list: "a list"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class ChatCall:
    operation: OperationRequest
    stream: bool
    include_usage: bool
    legacy_functions: bool = False  # asked with `functions`: answered with `function_call`


def _invalid(param: str, message: str) -> errors.InvalidRequest:
    return invalid_field(param, message)


def model_field(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise _invalid("model", "`model` must name a configured model (see GET /v1/models).")
    return model.strip()


def user_field(body: dict) -> str | None:
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise _invalid("user", "`user` must be a string of at most 256 characters.")
    return user


def number_field(body: dict, name: str, *, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(name, f"`{name}` must be a number between {low:g} and {high:g}.")
    return float(value)


def _positive_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise _invalid(name, f"`{name}` must be an integer between 1 and {MAX_TOKENS_LIMIT}.")
    return value


def _tools(body: dict) -> tuple[tuple[Tool, ...], ToolChoice | None, bool]:
    """(tools, tool choice, whether they came as legacy `functions`)."""
    if body.get("functions") is not None:
        if body.get("tools") is not None:
            raise _invalid("functions", "Give either `tools` or the legacy `functions`.")
        tools, choice = legacy_tools(body)
        return tools, choice, True
    if body.get("function_call") is not None:
        raise _invalid("function_call", "`function_call` is only allowed with `functions`.")
    tools = parse_tools(body.get("tools"))
    return tools, parse_tool_choice(body.get("tool_choice"), tools), False


def _stop(body: dict) -> tuple[str, ...] | None:
    value = body.get("stop")
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 4
        or not all(isinstance(s, str) and s for s in value)
    ):
        raise _invalid("stop", "`stop` must be a string or a list of up to 4 non-empty strings.")
    return tuple(value)


def _response_format(body: dict) -> tuple[dict | None, dict | None]:
    """(response_format passed to the provider, JSON schema our pipeline validates)."""
    value = body.get("response_format")
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return {"type": "json_object"}, None
    if kind != "json_schema":
        raise _invalid(
            "response_format",
            "`response_format.type` must be one of text, json_object, json_schema.",
        )
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise _invalid(
            "response_format.json_schema", "`response_format.json_schema.schema` must be an object."
        )
    problem = schema_problem(schema)
    if problem is not None:
        raise _invalid("response_format.json_schema", problem)
    return value, schema


def _metadata(body: dict) -> dict[str, str]:
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid("metadata", "`metadata` must be an object of string values.")
    return value


def _check_types(body: dict) -> None:
    for name, types in JSON_TYPES.items():
        value = body.get(name)
        if value is not None and type(value) not in types:
            raise _invalid(name, f"`{name}` must be {_JSON_TYPE[types[-1]]}.")


def _session_id(value: str, *, source: str) -> str:
    if not is_valid_session_id(value):
        raise _invalid(source, f"`{source}` must be {SESSION_ID_RULE}.")
    return value


def _operation_type(value: str | None, *, source: str, default: OperationType) -> OperationType:
    if value is None:
        return default
    op = parse_operation_type(value)
    if op is None:
        raise _invalid(
            source,
            f"Unknown operation type {value[:64]!r}; expected one of "
            + ", ".join(OperationType.values)
            + ".",
        )
    return op


def _flag(value: str | None, *, source: str) -> bool | None:
    if value is None:
        return None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise _invalid(source, f"`{source}` must be true or false.")


def _pick(headers: Mapping[str, str], meta: dict[str, str], header: str, key: str):
    """(value, where it came from): the header wins over `metadata`."""
    if headers.get(header) is not None:
        return headers[header], header
    if key in meta:
        return meta[key], f"metadata.{key}"
    return None, header


@dataclass(frozen=True, slots=True)
class AuraFields:
    """What our headers (or chat's `metadata`) say about an operation."""

    session_id: str
    operation_type: OperationType
    budget_name: str | None
    enable_cache: bool | None
    end_user: str | None  # whose spend budgets apply; the `user` field when not given

    def end_user_or(self, user: str | None) -> str | None:
        """The end user: our header (or metadata), else the body's `user` field."""
        if self.end_user is not None:
            return self.end_user
        return end_user_value(user, source="user") if user else None


def aura_fields(
    headers: Mapping[str, str],
    meta: dict[str, str],
    *,
    default_session: str,
    default_operation: OperationType = OperationType.COMPLETION,
) -> AuraFields:
    """The session, operation type, named budget and cache switch: each from its header,
    else from `metadata` (chat only), else the default."""
    session, source = _pick(headers, meta, SESSION_HEADER, "session_id")
    op, op_source = _pick(headers, meta, OPERATION_TYPE_HEADER, "operation_type")
    budget, budget_source = _pick(headers, meta, BUDGET_HEADER, "budget")
    cache, cache_source = _pick(headers, meta, ENABLE_CACHE_HEADER, "enable_cache")
    end_user, end_user_source = _pick(headers, meta, END_USER_HEADER, "end_user")
    if budget is not None and (not budget.strip() or len(budget) > 100):
        raise _invalid(budget_source, f"`{budget_source}` must name a budget constraint.")
    return AuraFields(
        session_id=default_session if session is None else _session_id(session, source=source),
        operation_type=_operation_type(op, source=op_source, default=default_operation),
        budget_name=budget.strip() if budget else None,
        enable_cache=_flag(cache, source=cache_source),
        end_user=None if end_user is None else end_user_value(end_user, source=end_user_source),
    )


def end_user_value(value: str, *, source: str) -> str:
    """An end user's name: 1 to 200 characters, not blank."""
    if not is_valid_end_user(value):
        raise _invalid(source, f"`{source}` must be {END_USER_RULE} (an end user's name).")
    return value


def chat_call_from(*, body: object, headers: Mapping[str, str], default_session: str) -> ChatCall:
    """Validate a chat-completions body and build the pipeline's request from it."""
    # Lone surrogates and NUL characters never get here: the body parser refuses them
    # with the field's name (api/jsonbody.py).
    if not isinstance(body, dict):
        raise _invalid("body", "The request body must be a JSON object.")
    model = model_field(body)
    _check_types(body)
    n = body.get("n")
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise _invalid("n", f"`n` must be between 1 and {MAX_CHOICES}.")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not 0 <= top_logprobs <= 20:
        raise _invalid("top_logprobs", "`top_logprobs` must be between 0 and 20.")
    tools, tool_choice, legacy = _tools(body)
    stream = body.get("stream")
    options = body.get("stream_options")
    include_usage = options.get("include_usage") if options else None
    if include_usage is not None and not isinstance(include_usage, bool):
        raise _invalid("stream_options", "`stream_options.include_usage` must be a boolean.")
    user = user_field(body)
    # max_completion_tokens is the newer name of max_tokens; it wins when both are given.
    legacy_max_tokens = _positive_int(body, "max_tokens")
    max_tokens = _positive_int(body, "max_completion_tokens") or legacy_max_tokens
    response_format, response_schema = _response_format(body)
    aura = aura_fields(headers, _metadata(body), default_session=default_session)
    operation = OperationRequest(
        session_id=aura.session_id,
        operation_type=aura.operation_type,
        messages=parse_messages(body.get("messages")),
        enable_cache=aura.enable_cache,
        budget_name=aura.budget_name,
        overrides=PresetOverrides(
            temperature=number_field(body, "temperature", low=0.0, high=2.0),
            top_p=number_field(body, "top_p", low=0.0, high=1.0),
            max_tokens=max_tokens,
        ),
        model=model,
        response_schema=response_schema,
        stop=_stop(body),
        response_format=response_format,
        user=user,
        end_user=aura.end_user_or(user),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        n=n,
        extra={k: v for k, v in body.items() if k not in OWN_FIELDS},
        source="gateway",
    )
    return ChatCall(
        operation=operation,
        stream=bool(stream),
        include_usage=bool(include_usage),
        legacy_functions=legacy,
    )
