"""The one execute parser (`api/bodies.py`), Django's view and the fast front alike:
what it accepts and builds, what it refuses, and that every refusal names every bad
field. No database: parsing is a pure function of the body. (The bodies below were the
fast path's validator's pinning tests; their behaviour is kept.)"""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aura_orchestrator import errors
from aura_orchestrator.api import bodies
from aura_orchestrator.api.bodies import execute_request
from budgets.caps import CAPS
from budgets.services import Caps
from presets.operation_types import OperationType

BASE = {"session_id": "video-1", "operation_type": "planning", "prompt": "Plan a video"}


def refusal(body: object) -> dict[str, list[str]]:
    with pytest.raises(errors.InvalidRequest) as caught:
        execute_request(body)
    fields = caught.value.details["fields"]
    assert caught.value.message.startswith(f"Invalid request: {next(iter(fields))}: ")
    return fields


VALID = [
    BASE,
    {**BASE, "operation_type": "SsmlPlanning"},
    {**BASE, "operation_type": "ssml-planning"},
    {**BASE, "operation_type": " COMPLETION "},
    {**BASE, "session_id": "  padded session  "},
    {**BASE, "session_id": "é" * 200, "prompt": "  keeps its spaces  "},
    {**BASE, "prompt": " "},
    {**BASE, "system_prompt": "Be terse."},
    {**BASE, "system_prompt": ""},
    {**BASE, "system_prompt": None},
    {**BASE, "enable_cache": True, "cache_ttl_seconds": 60},
    {**BASE, "enable_cache": False, "cache_ttl_seconds": 30 * 86400},
    {**BASE, "enable_cache": None, "cache_ttl_seconds": None},
    {**BASE, "providers": ["primary", " backup "], "model": " sim-gpt "},
    {**BASE, "providers": None, "model": None},
    {**BASE, "budget": "tight-budget_1"},
    {**BASE, "budget": None, "budget_constraint": None},
    {**BASE, "budget_constraint": {}},
    {
        **BASE,
        "budget_constraint": {
            "max_tokens_per_operation": 100,
            "max_cost_per_operation": "0.05",
            "max_tokens_per_session": None,
            "max_cost_per_session": 12.5,
            "enforce_hard_limits": False,
        },
    },
    {**BASE, "budget_constraint": {"max_cost_per_session": 3}},
    {**BASE, "budget_constraint": {"max_cost_per_session": "0.000001"}},
    {**BASE, "budget_constraint": {"max_cost_per_session": " 1e3 "}},
    {**BASE, "budget": None, "budget_constraint": {"max_tokens_per_session": 5}},
    {**BASE, "custom_preset": {}},
    {**BASE, "custom_preset": None},
    {
        **BASE,
        "custom_preset": {
            "temperature": 0,
            "top_p": 1,
            "max_tokens": 200,
            "timeout_seconds": 600.0,
            "max_retries": 0,
        },
    },
    {**BASE, "custom_preset": {"temperature": 2.0, "top_p": 0.5, "timeout_seconds": 1}},
    {**BASE, "response_schema": {"type": "object", "required": ["n"]}},
    {**BASE, "response_schema": None},
    {**BASE, "prompt": "x" * 2_000_000},
]


@pytest.mark.parametrize("body", VALID)
def test_valid_bodies_become_operation_requests(body):
    op = execute_request(body)
    assert op.source == "api" and op.messages[-1].content == body["prompt"]


def test_the_built_request_has_the_expected_values():
    body = {
        **BASE,
        "session_id": " s ",
        "operation_type": "SsmlPlanning",
        "system_prompt": "sys",
        "budget_constraint": {"max_cost_per_operation": "0.5"},
        "custom_preset": {"temperature": 1},
        "providers": [" a "],
        "model": " m ",
    }
    op = execute_request(body)
    assert op.session_id == "s" and op.operation_type is OperationType.SSML_PLANNING
    assert [m.role for m in op.messages] == ["system", "user"]
    assert op.caps.limits["max_cost_per_operation_micros"] == 500_000
    assert op.caps.enforce_hard_limits
    assert op.overrides.temperature == 1.0 and isinstance(op.overrides.temperature, float)
    assert op.providers == ("a",) and op.model == "m"
    assert op.enable_cache is None and op.budget_name is None


def test_money_takes_decimal_strings_and_json_numbers_exactly():
    op = execute_request({**BASE, "budget_constraint": {"max_cost_per_session": 0.1}})
    assert op.caps.limits["max_cost_per_session_micros"] == 100_000
    data = bodies.EXECUTE.parse({**BASE, "budget_constraint": {"max_cost_per_session": "0.1"}})
    assert data["budget_constraint"]["max_cost_per_session"] == Decimal("0.100000")
    assert data["budget_constraint"]["enforce_hard_limits"] is True  # the default


INVALID = [
    # (body, the fields named)
    (None, {"body"}),
    ([], {"body"}),
    ([BASE], {"body"}),
    ("body", {"body"}),
    ({}, {"session_id", "operation_type", "prompt"}),
    ({k: v for k, v in BASE.items() if k != "prompt"}, {"prompt"}),
    ({**{k: v for k, v in BASE.items() if k != "prompt"}, "messages": None}, {"prompt"}),
    ({**BASE, "messages": [{"role": "user", "content": "x"}]}, {"messages"}),
    ({**BASE, "prompt": None, "messages": [{"role": "user", "content": "x"}]}, {"prompt"}),
    ({**BASE, "prompt": ""}, {"prompt"}),
    ({**BASE, "prompt": None}, {"prompt"}),
    ({**BASE, "prompt": "a\x00b"}, {"prompt"}),
    ({**BASE, "prompt": "x" * 2_000_001}, {"prompt"}),
    ({**BASE, "system_prompt": "\x00"}, {"system_prompt"}),
    ({**BASE, "session_id": ""}, {"session_id"}),
    ({**BASE, "session_id": "   "}, {"session_id"}),
    ({**BASE, "session_id": "tab\there"}, {"session_id"}),
    ({**BASE, "session_id": "x" * 201}, {"session_id"}),
    ({**BASE, "session_id": None}, {"session_id"}),
    ({**BASE, "operation_type": "unknown"}, {"operation_type"}),
    ({**BASE, "operation_type": ""}, {"operation_type"}),
    ({**BASE, "operation_type": "x" * 65}, {"operation_type"}),
    ({**BASE, "enable_cache": "maybe"}, {"enable_cache"}),
    ({**BASE, "cache_ttl_seconds": 0}, {"cache_ttl_seconds"}),
    ({**BASE, "cache_ttl_seconds": 30 * 86400 + 1}, {"cache_ttl_seconds"}),
    ({**BASE, "cache_ttl_seconds": True}, {"cache_ttl_seconds"}),
    ({**BASE, "cache_ttl_seconds": 1.5}, {"cache_ttl_seconds"}),
    ({**BASE, "budget": "not a slug"}, {"budget"}),
    ({**BASE, "budget": "x" * 101}, {"budget"}),
    ({**BASE, "budget": ""}, {"budget"}),
    ({**BASE, "budget": "b", "budget_constraint": {}}, {"budget"}),
    ({**BASE, "budget_constraint": []}, {"budget_constraint"}),
    (
        {**BASE, "budget_constraint": {"max_tokens_per_operation": 0}},
        {"budget_constraint.max_tokens_per_operation"},
    ),
    (
        {**BASE, "budget_constraint": {"max_cost_per_operation": "-1"}},
        {"budget_constraint.max_cost_per_operation"},
    ),
    (
        {**BASE, "budget_constraint": {"max_cost_per_operation": "0.0000001"}},
        {"budget_constraint.max_cost_per_operation"},
    ),
    (
        {**BASE, "budget_constraint": {"max_cost_per_operation": "123456789"}},
        {"budget_constraint.max_cost_per_operation"},
    ),
    (
        {**BASE, "budget_constraint": {"max_cost_per_operation": "NaN"}},
        {"budget_constraint.max_cost_per_operation"},
    ),
    (
        {**BASE, "budget_constraint": {"max_cost_per_operation": True}},
        {"budget_constraint.max_cost_per_operation"},
    ),
    (
        {**BASE, "budget_constraint": {"enforce_hard_limits": None}},
        {"budget_constraint.enforce_hard_limits"},
    ),
    ({**BASE, "custom_preset": {"temperature": 2.01}}, {"custom_preset.temperature"}),
    ({**BASE, "custom_preset": {"top_p": -0.1}}, {"custom_preset.top_p"}),
    ({**BASE, "custom_preset": {"max_tokens": 0}}, {"custom_preset.max_tokens"}),
    ({**BASE, "custom_preset": {"max_tokens": 1_000_001}}, {"custom_preset.max_tokens"}),
    ({**BASE, "custom_preset": {"timeout_seconds": 0.5}}, {"custom_preset.timeout_seconds"}),
    ({**BASE, "custom_preset": {"max_retries": 11}}, {"custom_preset.max_retries"}),
    ({**BASE, "custom_preset": {"temperature": None}}, {"custom_preset.temperature"}),
    ({**BASE, "custom_preset": "hot"}, {"custom_preset"}),
    ({**BASE, "providers": []}, {"providers"}),
    ({**BASE, "providers": "primary"}, {"providers"}),
    ({**BASE, "providers": ["a"] * 11}, {"providers"}),
    ({**BASE, "providers": ["not a slug"]}, {"providers[0]"}),
    ({**BASE, "providers": ["ok", "x" * 65]}, {"providers[1]"}),
    ({**BASE, "model": ""}, {"model"}),
    ({**BASE, "model": "m" * 201}, {"model"}),
    ({**BASE, "response_schema": "object"}, {"response_schema"}),
    ({**BASE, "response_schema": {"type": 5}}, {"response_schema"}),
    ({**BASE, "response_schema": []}, {"response_schema"}),
]


@pytest.mark.parametrize(("body", "named"), INVALID)
def test_bad_bodies_are_refused_naming_the_field(body, named):
    assert set(refusal(body)) == named


# What DRF's serializer coerced or ignored (a 200 before): now a 400 naming the field.
STRICT = [
    ({**BASE, "session_id": 42}, "session_id", "Must be a string."),
    ({**BASE, "prompt": 42}, "prompt", "Must be a string."),
    ({**BASE, "prompt": 3.5}, "prompt", "Must be a string."),
    ({**BASE, "operation_type": ["planning"]}, "operation_type", "Must be a string."),
    ({**BASE, "enable_cache": "true"}, "enable_cache", "Must be true or false."),
    ({**BASE, "enable_cache": 1}, "enable_cache", "Must be true or false."),
    ({**BASE, "cache_ttl_seconds": "60"}, "cache_ttl_seconds", "Must be an integer."),
    ({**BASE, "cache_ttl_seconds": 60.0}, "cache_ttl_seconds", "Must be an integer."),
    ({**BASE, "custom_preset": {"max_retries": 5.0}}, "custom_preset.max_retries", None),
    ({**BASE, "custom_preset": {"temperature": "0.5"}}, "custom_preset.temperature", None),
    ({**BASE, "custom_preset": {"temperature": True}}, "custom_preset.temperature", None),
    (
        {**BASE, "budget_constraint": {"enforce_hard_limits": "false"}},
        "budget_constraint.enforce_hard_limits",
        None,
    ),
    (
        {**BASE, "budget_constraint": {"max_tokens_per_session": "5"}},
        "budget_constraint.max_tokens_per_session",
        None,
    ),
    ({**BASE, "model": 7}, "model", "Must be a string."),
    ({**BASE, "providers": ["a", 3]}, "providers[1]", "Must be a string."),
    ({**BASE, "tags": ["a"]}, "tags", "Unknown field."),
    ({**BASE, "custom_preset": {"max_tokens": 200, "seed": 1}}, "custom_preset.seed", None),
    ({**BASE, "budget_constraint": {"max_cost": "1"}}, "budget_constraint.max_cost", None),
]


@pytest.mark.parametrize(("body", "path", "message"), STRICT)
def test_wrong_json_types_and_unknown_fields_are_refused(body, path, message):
    fields = refusal(body)
    assert list(fields) == [path]
    if message:
        assert fields[path] == [message]


def test_every_bad_field_is_named_at_once():
    body = {
        **BASE,
        "prompt": 42,
        "enable_cache": "true",
        "custom_preset": {"max_retries": 5.0, "top_p": 2},
        "budget_constraint": {"max_cost_per_session": "x"},
        "providers": ["ok", "no slug"],
        "colour": "blue",
    }
    fields = refusal(body)
    assert set(fields) == {
        "prompt",
        "enable_cache",
        "custom_preset.max_retries",
        "custom_preset.top_p",
        "budget_constraint.max_cost_per_session",
        "providers[1]",
        "colour",
    }
    with pytest.raises(errors.InvalidRequest) as caught:
        execute_request(body)
    assert "(6 more in details.fields)" in caught.value.message


def test_a_body_of_countless_unknown_fields_gets_a_bounded_answer():
    fields = refusal({**BASE, **{f"k{i}": i for i in range(5000)}})
    assert 1 <= len(fields) <= 50


def test_the_budget_constraint_fields_are_the_caps_table():
    """Derived from budgets.caps.CAPS: money caps take decimals, token caps integers."""
    fields = bodies.BUDGET_CONSTRAINT.fields
    assert set(fields) == {cap.field for cap in CAPS} | {"enforce_hard_limits"}
    every = bodies.BUDGET_CONSTRAINT.parse({cap.field: 1 for cap in CAPS})
    assert set(Caps.inline(**every).limits) == {cap.column for cap in CAPS}
    for cap in CAPS:
        good = "0.5" if cap.unit.money else 5
        data = bodies.BUDGET_CONSTRAINT.parse({cap.field: good})
        assert data[cap.field] == (Decimal("0.500000") if cap.unit.money else 5)
        with pytest.raises(errors.InvalidRequest):
            bodies.BUDGET_CONSTRAINT.parse({cap.field: 0.5 if not cap.unit.money else True})


@pytest.mark.parametrize(
    ("shape", "body", "named"),
    [
        (bodies.ESTIMATE, {"operation_type": "planning", "prompt": 1}, {"prompt"}),
        (bodies.ESTIMATE, {"operation_type": "planning", "prompt": "x", "n": 1}, {"n"}),
        (bodies.ESTIMATE, {"operation_type": "planning", "prompt": "x", "session_id": 5}, None),
        (bodies.OPTIMIZE, {"operation_type": "planning", "use_llm": "true"}, {"use_llm"}),
        (
            bodies.OPTIMIZE,
            {"operation_type": "planning", "constraints": {"max_tokens": 10.0, "max_cost": []}},
            {"constraints.max_tokens", "constraints.max_cost"},
        ),
        (bodies.OPTIMIZE, {"operation_type": "planning", "budget": "x"}, {"budget"}),
        (bodies.EXPLAIN, {"adjusted": {"max_tokens": 5}}, {"base"}),
        (bodies.EXPLAIN, {"adjusted": {"max_tokens": "5"}, "reason": 3}, None),
    ],
)
def test_the_other_endpoints_are_as_strict(shape, body, named):
    with pytest.raises(errors.InvalidRequest) as caught:
        shape.parse(body)
    fields = caught.value.details["fields"]
    assert set(fields) == (named or set(fields)) and fields


def test_the_other_endpoints_accept_their_documented_bodies():
    assert bodies.OPTIMIZE.parse({"operation_type": "Planning"}) == {
        "operation_type": OperationType.PLANNING,
        "use_llm": False,
    }
    data = bodies.OPTIMIZE.parse(
        {"operation_type": "planning", "constraints": {"max_cost": 0.25, "max_tokens": 10}}
    )
    assert data["constraints"] == {
        "max_cost": Decimal("0.250000"),
        "max_tokens": 10,
        "prioritize_quality": None,
    }
    data = bodies.EXPLAIN.parse({"operation_type": "creative", "adjusted": {"top_p": 1}})
    assert data["adjusted"] == {"top_p": 1.0} and data["use_llm"] is False
    data = bodies.ESTIMATE.parse({"operation_type": "planning", "prompt": " x ", "model": " m "})
    assert (data["prompt"], data["model"]) == (" x ", "m")


# --- Generated bodies ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    # keys without `.` or `[`, so that a path's first part is the key
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet="abz_ é", max_size=8), inner)
    ),
    max_leaves=8,
)
NAMES = st.sampled_from([*bodies.EXECUTE.fields, "tag"])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, JSON, max_size=6).map(lambda b: {**BASE, **b}) | JSON)
def test_any_json_body_is_a_request_or_a_400_naming_its_fields(body):
    """Never another exception; each named field is one the body holds or requires."""
    try:
        execute_request(body)
    except errors.InvalidRequest as exc:
        fields = exc.details["fields"]
        assert fields and all(messages for messages in fields.values())
        for path in fields:
            top = path.split(".")[0].split("[")[0]
            assert (
                top == "body"
                or top in body
                or bodies.EXECUTE.fields[top].required
                or top in bodies.EXECUTE.one_of
            )
