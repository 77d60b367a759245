"""The one JSON body parser on its own: what it returns, what it refuses and the field
it names, and that a refusal is cheap to make."""

import json

import pytest

from aura_orchestrator import errors
from aura_orchestrator.api.jsonbody import parse_json_body
from tests.edge.helpers import nested, nested_text


def refusal(raw: bytes | str) -> errors.InvalidRequest:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_json_body(raw)
    assert caught.value.status == 400 and caught.value.code == "invalid_request"
    return caught.value


def field(raw: bytes | str) -> str | None:
    return refusal(raw).details.get("param")


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True, "é ☃ 😀", {"b": "[{[{"}]},
        "text",
        [],
        nested(64),
        {"s": "\\u0000 written out", "k\\u0000": 1},
    ],
)
def test_what_it_accepts_is_what_orjson_reads(value):
    text = json.dumps(value, ensure_ascii=False)
    assert parse_json_body(text.encode()) == value
    assert parse_json_body(text) == value  # a body DRF decoded from another charset


def test_depth_counts_objects_and_arrays_and_stops_at_the_setting(settings):
    assert parse_json_body(json.dumps(nested(64)).encode()) == nested(64)
    assert field(json.dumps(nested(65)).encode()) == "[0][0][0][0][0][0][0][0]…"
    settings.AURA = {**settings.AURA, "MAX_JSON_DEPTH": 3}
    assert parse_json_body(b'{"a": {"b": [1]}}') == {"a": {"b": [1]}}
    assert field(b'{"a": {"b": [[1]]}}') == "a.b[0]"
    assert field(b'{"a": 1, "c": [{"d": {"e": {}}}]}') == "c[0].d"


@pytest.mark.parametrize("depth", [1025, 10_000, 200_000])
def test_deeper_than_any_parser_goes_is_still_too_deep_and_says_where(depth):
    raw = b'{"ok": [[1]], "x": {"y": [0, ' + nested_text(depth).encode() + b"]}}"
    error = refusal(raw)
    assert error.details["param"] == "x.y[1][0][0][0][0][0]…"
    assert "nested too deeply" in error.message and "64 levels" in error.message


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"a": "x\\u0000"}', "a"),
        (b'{"a\\u0000b": 1}', "a\\u0000b"),
        (b'{"m": [{"c": [{"t": "\\u0000"}]}]}', "m[0].c[0].t"),
        (b'["\\u0000"]', "[0]"),
        (b'"\\u0000"', "body"),
        (b'{"a": "\\ud800"}', "a"),
        (b'{"a": "\\udc00\\ud800"}', "a"),
        (b'{"a": ["ok", "\\ud83dx"]}', "a[1]"),
        (b'{"\\ud800": 1}', "\\ud800"),
        (b'{"a": "\xed\xa0\x80"}', "a"),  # a surrogate encoded as UTF-8 bytes
    ],
)
def test_nul_and_lone_surrogates_are_refused_where_they_are(raw, path):
    error = refusal(raw)
    assert error.details == {"fields": {path: [error.message]}, "param": path}
    assert f"`{path}`" in error.message
    json.dumps(error.details, ensure_ascii=False).encode()  # printable in any response


def test_a_pair_of_surrogates_is_one_character():
    assert parse_json_body(b'"\\ud83d\\ude00"') == "😀"


@pytest.mark.parametrize("raw", [b"{nope", b'{"a": NaN}', b"", b"\xff", b'{"a": 1e999}'])
def test_what_is_not_json_is_a_plain_parse_error(raw):
    error = refusal(raw)
    assert error.message.startswith("Malformed request body: JSON parse error - ")
    assert not error.details


def test_a_long_field_name_is_cut_short():
    raw = json.dumps({"k" * 500: [{"j" * 500: "\x00"}]}).encode()
    assert field(raw) == "k" * 64 + "[0]." + "j" * 64
