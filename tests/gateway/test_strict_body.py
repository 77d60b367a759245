"""The chat-completions body is as strict as OpenAI's: a message that needs `content` and
has none, or a known parameter of the wrong JSON type, is a 400 naming the parameter;
fields the gateway does not use (as OpenAI's SDKs send them) are still ignored."""

import pytest

from aura_orchestrator import errors
from aura_orchestrator.gateway.translate import chat_call_from


def call(**body):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **body}
    return chat_call_from(body=body, headers={}, default_session="gateway-k")


def param_of(**body) -> str:
    with pytest.raises(errors.InvalidRequest) as caught:
        call(**body)
    return caught.value.details["param"]


@pytest.mark.parametrize("role", ["user", "system", "developer"])
@pytest.mark.parametrize("content", ["absent", None])
def test_a_message_that_needs_content_without_it_is_refused(role, content):
    message = {"role": role} if content == "absent" else {"role": role, "content": None}
    messages = [{"role": "user", "content": "first"}, message]
    assert param_of(messages=messages) == "messages[1].content"


def test_an_assistant_message_may_omit_its_content():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "b"},
    ]
    assert [m.content for m in call(messages=messages).operation.messages] == ["a", "", "", "b"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 1.0),
        ("n", True),
        ("logprobs", "no"),
        ("logprobs", 0),
        ("stream", "true"),
        ("stream_options", "usage"),
        ("stream_options", []),
        ("seed", "7"),
        ("seed", 7.5),
        ("frequency_penalty", "0"),
        ("presence_penalty", True),
        ("logit_bias", []),
        ("store", "yes"),
        ("top_logprobs", 1.0),
        ("parallel_tool_calls", 1),
        ("reasoning_effort", 2),
        ("modalities", "text"),
        ("temperature", "0.5"),
        ("max_tokens", 10.0),
        ("user", 5),
        ("metadata", {"a": 1}),
    ],
)
def test_a_known_parameter_of_the_wrong_type_is_refused(field, value):
    assert param_of(**{field: value}) == field


def test_a_message_name_must_be_text():
    assert param_of(messages=[{"role": "user", "content": "x", "name": 3}]) == "messages[0].name"


def test_what_openai_sdks_send_is_still_accepted():
    operation = call(
        seed=7,
        frequency_penalty=0,
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        store=False,
        top_logprobs=None,
        parallel_tool_calls=True,
        service_tier="auto",
        logprobs=False,
        n=1,
        stream_options=None,
        user="u-1",
        metadata={"session_id": "s-1"},
        some_future_parameter={"x": 1},
        messages=[{"role": "user", "content": "x", "name": "alice"}],
    ).operation
    assert operation.session_id == "s-1" and operation.user == "u-1"
