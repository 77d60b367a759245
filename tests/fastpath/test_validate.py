"""The fast path's execute validator against ExecuteInputSerializer: whatever it accepts,
the serializer accepts and turns into the same OperationRequest; whatever the serializer
refuses, it delegates. No database: both are pure functions of the body."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aura_orchestrator.api.serializers import (
    BudgetConstraintSerializer,
    CustomPresetSerializer,
    ExecuteInputSerializer,
)
from aura_orchestrator.api.views import operation_request_from
from aura_orchestrator.fastpath import validate
from aura_orchestrator.fastpath.validate import Delegate
from presets.operation_types import OperationType


def serializer_request(body: object):
    """What the view builds, or None when the serializer refuses the body."""
    serializer = ExecuteInputSerializer(data=body)
    if not serializer.is_valid():
        return None
    return operation_request_from(serializer.validated_data)


def fast_request(body: object):
    try:
        return validate.execute_request(body)
    except Delegate:
        return None


def test_the_rules_name_exactly_the_serializers_fields():
    """A field added to a serializer but not to the fast path is delegated, never dropped;
    this keeps the two lists equal so the fast path keeps serving such requests."""
    assert set(validate.EXECUTE_RULES) | set(validate.REQUIRED_FIELDS) == set(
        ExecuteInputSerializer().fields
    )
    assert set(validate.BUDGET_CONSTRAINT_RULES) == set(BudgetConstraintSerializer().fields)
    assert set(validate.CUSTOM_PRESET_RULES) == set(CustomPresetSerializer().fields)


BASE = {"session_id": "video-1", "operation_type": "planning", "prompt": "Plan a video"}

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
def test_valid_bodies_give_the_serializers_request(body):
    expected = serializer_request(body)
    assert expected is not None
    assert validate.execute_request(body) == expected


def test_the_built_request_has_the_expected_values():
    body = {
        **BASE,
        "session_id": " s ",
        "operation_type": "SsmlPlanning",
        "system_prompt": "sys",
        "budget_constraint": {"max_cost_per_operation": "0.5"},
        "custom_preset": {"temperature": 1},
        "providers": ["a"],
    }
    op = validate.execute_request(body)
    assert op.session_id == "s" and op.operation_type is OperationType.SSML_PLANNING
    assert [m.role for m in op.messages] == ["system", "user"]
    assert op.caps.max_cost_per_operation_micros == 500_000 and op.caps.enforce_hard_limits
    assert op.overrides.temperature == 1.0 and isinstance(op.overrides.temperature, float)
    assert op.providers == ("a",)


INVALID = [
    None,
    [],
    [BASE],
    "body",
    {},
    {k: v for k, v in BASE.items() if k != "prompt"},
    {k: v for k, v in BASE.items() if k != "session_id"},
    {k: v for k, v in BASE.items() if k != "operation_type"},
    {**BASE, "prompt": ""},
    {**BASE, "prompt": None},
    {**BASE, "prompt": "a\x00b"},
    {**BASE, "prompt": "x" * 2_000_001},
    {**BASE, "system_prompt": "\x00"},
    {**BASE, "session_id": ""},
    {**BASE, "session_id": "   "},
    {**BASE, "session_id": "tab\there"},
    {**BASE, "session_id": "x" * 201},
    {**BASE, "session_id": None},
    {**BASE, "operation_type": "unknown"},
    {**BASE, "operation_type": ""},
    {**BASE, "operation_type": "x" * 65},
    {**BASE, "enable_cache": "maybe"},
    {**BASE, "cache_ttl_seconds": 0},
    {**BASE, "cache_ttl_seconds": 30 * 86400 + 1},
    {**BASE, "cache_ttl_seconds": True},
    {**BASE, "cache_ttl_seconds": 1.5},
    {**BASE, "budget": "not a slug"},
    {**BASE, "budget": "x" * 101},
    {**BASE, "budget": ""},
    {**BASE, "budget": "b", "budget_constraint": {}},
    {**BASE, "budget_constraint": []},
    {**BASE, "budget_constraint": {"max_tokens_per_operation": 0}},
    {**BASE, "budget_constraint": {"max_cost_per_operation": "-1"}},
    {**BASE, "budget_constraint": {"max_cost_per_operation": "0.0000001"}},
    {**BASE, "budget_constraint": {"max_cost_per_operation": "123456789"}},
    {**BASE, "budget_constraint": {"max_cost_per_operation": "NaN"}},
    {**BASE, "budget_constraint": {"enforce_hard_limits": None}},
    {**BASE, "custom_preset": {"temperature": 2.01}},
    {**BASE, "custom_preset": {"top_p": -0.1}},
    {**BASE, "custom_preset": {"max_tokens": 0}},
    {**BASE, "custom_preset": {"max_tokens": 1_000_001}},
    {**BASE, "custom_preset": {"timeout_seconds": 0.5}},
    {**BASE, "custom_preset": {"max_retries": 11}},
    {**BASE, "custom_preset": {"temperature": None}},
    {**BASE, "custom_preset": "hot"},
    {**BASE, "providers": []},
    {**BASE, "providers": "primary"},
    {**BASE, "providers": ["a"] * 11},
    {**BASE, "providers": ["not a slug"]},
    {**BASE, "providers": ["x" * 65]},
    {**BASE, "model": ""},
    {**BASE, "model": "m" * 201},
    {**BASE, "response_schema": "object"},
    {**BASE, "response_schema": {"type": 5}},
    {**BASE, "response_schema": []},
]


@pytest.mark.parametrize("body", INVALID)
def test_bodies_the_serializer_refuses_are_delegated(body):
    assert serializer_request(body) is None
    with pytest.raises(Delegate):
        validate.execute_request(body)


# Bodies the serializer accepts but the fast path leaves to it (types DRF coerces, fields
# it ignores): delegated, so Django answers exactly as before.
COERCED = [
    {**BASE, "session_id": 42},
    {**BASE, "prompt": 3.5},
    {**BASE, "enable_cache": "true"},
    {**BASE, "cache_ttl_seconds": "60"},
    {**BASE, "cache_ttl_seconds": 60.0},
    {**BASE, "custom_preset": {"temperature": "0.5"}},
    {**BASE, "custom_preset": {"max_tokens": 200, "seed": 1}},
    {**BASE, "budget_constraint": {"enforce_hard_limits": "false"}},
    {**BASE, "tags": ["a"]},
]


@pytest.mark.parametrize("body", COERCED)
def test_bodies_outside_the_supported_subset_are_delegated(body):
    assert serializer_request(body) is not None
    with pytest.raises(Delegate):
        validate.execute_request(body)


# --- Generated bodies ------------------------------------------------------------------------

_OP_NAMES = [*OperationType.values, "SsmlPlanning", "ssml-planning", " Creative ", "PLANNING"]
texts = st.text(max_size=30)
slugs = st.from_regex(r"[-a-zA-Z0-9_]{1,10}", fullmatch=True)
numbers = st.one_of(
    st.integers(min_value=-3, max_value=1_000_002),
    st.floats(min_value=-1, max_value=700, allow_nan=False),
    st.sampled_from([0, 1, 2, 10, 11, 600, 1_000_000, 0.0, 1.0, 2.0, 2.5, True, False]),
)
money = st.one_of(
    st.decimals(min_value=-1, max_value=10**9, allow_nan=False, places=7).map(str),
    st.sampled_from(["0", "0.5", "12.345678", "0.0000001", "99999999.999999", "1e3", "x"]),
    st.integers(min_value=-1, max_value=10**9),
    st.floats(min_value=0, max_value=1000, allow_nan=False),
    st.none(),
)


def maybe(strategy):
    """Mostly a value, else null or a value of the wrong kind."""
    wrong = st.one_of(st.none(), st.integers(), texts, st.booleans())
    return st.one_of(*[strategy] * 8, wrong)


valid_fields = {
    "session_id": st.one_of(texts.filter(lambda s: s.strip()), slugs),
    "operation_type": st.sampled_from(_OP_NAMES),
    "prompt": st.text(min_size=1, max_size=50),
}
optional_valid = {
    "system_prompt": st.one_of(st.none(), texts),
    "enable_cache": st.one_of(st.none(), st.booleans()),
    "cache_ttl_seconds": st.one_of(st.none(), st.integers(1, 30 * 86400)),
    "budget_constraint": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "max_tokens_per_operation": st.one_of(st.none(), st.integers(1, 10**9)),
                "max_cost_per_operation": st.one_of(
                    st.none(), st.decimals(0, 10**6, places=6).map(str)
                ),
                "max_tokens_per_session": st.one_of(st.none(), st.integers(1, 10**9)),
                "max_cost_per_session": st.one_of(
                    st.none(), st.decimals(0, 10**6, places=6).map(str)
                ),
                "enforce_hard_limits": st.booleans(),
            },
        ),
    ),
    "custom_preset": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "temperature": st.floats(0, 2),
                "top_p": st.one_of(st.floats(0, 1), st.sampled_from([0, 1])),
                "max_tokens": st.integers(1, 1_000_000),
                "timeout_seconds": st.floats(1, 600),
                "max_retries": st.integers(0, 10),
            },
        ),
    ),
    "providers": st.one_of(st.none(), st.lists(slugs, min_size=1, max_size=10)),
    "model": st.one_of(st.none(), st.text(min_size=1, max_size=20).filter(str.strip)),
    "response_schema": st.one_of(
        st.none(), st.sampled_from([{"type": "object"}, {"type": "array", "items": {}}])
    ),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries(valid_fields, optional=optional_valid))
def test_generated_clean_bodies_take_the_fast_path_with_the_same_request(body):
    """Within the supported subset the fast path serves (budget+budget_constraint aside,
    which the serializer refuses) and builds the serializer's request."""
    expected = serializer_request(body)
    got = fast_request(body)
    if expected is None:  # e.g. a session id with a control character
        assert got is None
    else:
        assert got == expected


any_fields = {
    "session_id": maybe(st.one_of(slugs, texts, st.text(min_size=195, max_size=205))),
    "operation_type": maybe(st.sampled_from([*_OP_NAMES, "nope", "", " "])),
    "prompt": maybe(st.one_of(texts, texts, st.just(""), st.just("a\x00"))),
}
optional_any = {
    "system_prompt": maybe(st.one_of(texts, st.just(""), st.just("\x00"))),
    "enable_cache": maybe(st.sampled_from(["true", "no", 1, 0])),
    "cache_ttl_seconds": maybe(numbers),
    "budget": maybe(st.one_of(slugs, st.just(" padded "), st.just("no slug"), st.just(""))),
    "budget_constraint": maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "max_tokens_per_operation": maybe(numbers),
                "max_cost_per_operation": money,
                "max_tokens_per_session": maybe(numbers),
                "max_cost_per_session": money,
                "enforce_hard_limits": maybe(st.sampled_from(["true", 0])),
            },
        )
    ),
    "custom_preset": maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "temperature": maybe(numbers),
                "top_p": maybe(numbers),
                "max_tokens": maybe(numbers),
                "timeout_seconds": maybe(numbers),
                "max_retries": maybe(numbers),
            },
        )
    ),
    "providers": maybe(st.lists(st.one_of(slugs, texts, st.integers()), max_size=12)),
    "model": maybe(st.one_of(texts, st.just("  "), st.text(min_size=199, max_size=202))),
    "response_schema": maybe(
        st.sampled_from([{"type": "object"}, {"type": 5}, {"minimum": "x"}, [], {}])
    ),
}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries(any_fields, optional=optional_any))
def test_generated_bodies_never_accepted_beyond_the_serializer(body):
    """Anything the fast path accepts, the serializer accepts, with the same request."""
    got = fast_request(body)
    expected = serializer_request(body)
    event("fast path" if got is not None else "delegated")
    if got is not None:
        assert got == expected


def test_money_is_the_serializers_decimal():
    body = {**BASE, "budget_constraint": {"max_cost_per_session": 0.1}}
    op = validate.execute_request(body)
    assert op.caps.max_cost_per_session_micros == 100_000
    assert serializer_request(body).caps == op.caps
    data = validate.execute_data(body)
    assert data["budget_constraint"]["max_cost_per_session"] == Decimal("0.100000")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(optional_any)).flatmap(lambda n: st.tuples(st.just(n), optional_any[n]))
)
def test_generated_single_fields_on_their_boundaries(field):
    """One optional field at a time, valid or not: the fast path agrees with the
    serializer wherever it does not delegate, and serves most of the valid values."""
    name, value = field
    body = {**BASE, name: value}
    got = fast_request(body)
    expected = serializer_request(body)
    event("fast path" if got is not None else "delegated")
    if got is not None:
        assert got == expected
