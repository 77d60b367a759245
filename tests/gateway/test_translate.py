"""Request translation alone: every body either becomes an operation or a 400."""

from hypothesis import given, settings
from hypothesis import strategies as st

from aura_orchestrator import errors
from aura_orchestrator.gateway.translate import chat_call_from
from presets.operation_types import OperationType

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "response_format",
        "user",
        "metadata",
        "stream",
        "stream_options",
        "tools",
    ]
)
BODIES = st.dictionaries(FIELDS, JSON, max_size=8).map(
    lambda b: {"model": "m", "messages": [{"role": "user", "content": "x"}], **b}
)


@settings(max_examples=400, deadline=None)
@given(body=BODIES | JSON)
def test_any_json_body_is_an_operation_or_an_invalid_request(body):
    """No body, however odd, raises anything but InvalidRequest (a 400 naming a param)."""
    try:
        call = chat_call_from(body=body, headers={}, default_session="gateway-k")
    except errors.InvalidRequest as exc:
        assert exc.details["param"]
    else:
        assert call.operation.messages and call.operation.source == "gateway"


def test_request_parameters_override_the_preset_and_headers_win_over_metadata():
    call = chat_call_from(
        body={
            "model": " primary/sim-gpt ",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "temperature": 0,
            "max_tokens": 50,
            "max_completion_tokens": 70,
            "stop": "END",
            "metadata": {"session_id": "from-metadata", "operation_type": "planning"},
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"X-Aura-Session-Id": "from-header"},
        default_session="gateway-k",
    )
    op = call.operation
    assert (call.stream, call.include_usage) == (True, True)
    assert op.session_id == "from-header" and op.operation_type is OperationType.PLANNING
    assert [(m.role, m.content) for m in op.messages] == [("system", "Be brief."), ("user", "a\nb")]
    assert (op.overrides.temperature, op.overrides.max_tokens, op.overrides.top_p) == (
        0.0,
        70,
        None,
    )
    assert (op.model, op.stop) == ("primary/sim-gpt", ("END",))


def test_without_session_or_type_the_key_default_session_and_completion_apply():
    call = chat_call_from(
        body={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        headers={},
        default_session="gateway-abc",
    )
    assert call.operation.session_id == "gateway-abc"
    assert call.operation.operation_type is OperationType.COMPLETION
    assert call.operation.enable_cache is None and call.operation.budget_name is None
