"""Hostile JSON bodies on both hot endpoints, through the fast front and through Django
alone: a 400 naming the field, the same answer on both paths, never a 500, and nothing
reserved, charged or recorded (found by a fault probe: each of these was a 500, some
after a charge that left no telemetry row)."""

import http.server
import json
import threading

import pytest

from tests.edge.helpers import (
    CHAT,
    JSON,
    SCRIPTED,
    chat_body,
    execute_body,
    nested,
    nested_text,
    raw,
    refused_field,
    rows,
    schema_chain,
)
from tests.pipeline.helpers import EXECUTE

pytestmark = [pytest.mark.django_db(transaction=True)]

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}

EXECUTE_CASES: list[tuple[str, dict, str]] = [
    # (id, body, the field the 400 names)
    ("prompt NUL", execute_body("nul-1", prompt="a\x00b"), "prompt"),
    ("system_prompt NUL", execute_body("nul-2", system_prompt="\x00"), "system_prompt"),
    ("model NUL", execute_body("nul-3", model="sim\x00gpt"), "model"),
    ("budget NUL", execute_body("nul-4", budget="b\x00"), "budget"),
    ("session_id NUL", execute_body("nul\x005"), "session_id"),
    ("providers NUL", execute_body("nul-6", providers=["primary", "x\x00"]), "providers[1]"),
    (
        "schema string NUL",
        execute_body("nul-7", response_schema={"properties": {"n": {"description": "a\x00"}}}),
        "response_schema.properties.n.description",
    ),
    (
        "schema key NUL",
        execute_body("nul-8", response_schema={"properties": {"n\x00": {}}}),
        "response_schema.properties.n\\u0000",
    ),
    ("unknown key NUL", {**execute_body("nul-9"), "x\x00": 1}, "x\\u0000"),
    (
        "custom_preset key NUL",
        execute_body("nul-10", custom_preset={"top_p\x00": 1}),
        "custom_preset.top_p\\u0000",
    ),
    ("prompt surrogate", execute_body("sur-1", prompt="a\ud800"), "prompt"),
    (
        "schema surrogate",
        execute_body("sur-2", response_schema={"properties": {"n": {"description": "\udfff"}}}),
        "response_schema.properties.n.description",
    ),
    (
        "schema key surrogate",
        execute_body("sur-3", response_schema={"required": ["a"], "\ud83d": 1}),
        "response_schema.\\ud83d",
    ),
    (
        "schema 300 deep",
        execute_body("deep-1", response_schema=schema_chain(300)),
        "response_schema.items.items.items.items.items.items.items…",
    ),
    (
        "array 65 deep",
        execute_body("deep-2", response_schema={"enum": nested(63)}),
        "response_schema.enum[0][0][0][0][0][0]…",
    ),
]

CHAT_CASES = [
    ("content NUL", chat_body(messages=[{"role": "user", "content": "a\x00"}]), None),
    (
        "content part NUL",
        chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "\x00"}]}]),
        "messages[0].content[0].text",
    ),
    ("model NUL", chat_body(model="sim\x00gpt"), "model"),
    ("metadata value NUL", chat_body(metadata={"session_id": "s\x00"}), "metadata.session_id"),
    ("metadata key NUL", chat_body(metadata={"k\x00": "v"}), "metadata.k\\u0000"),
    ("user NUL", chat_body(user="u\x00"), "user"),
    ("stop NUL", chat_body(stop=["\x00"]), "stop[0]"),
    (
        "schema NUL",
        chat_body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": {"title": "\x00"}},
            }
        ),
        "response_format.json_schema.schema.title",
    ),
    ("content surrogate", chat_body(messages=[{"role": "user", "content": "\udc00"}]), None),
    (
        "schema 300 deep",
        chat_body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": schema_chain(300)},
            }
        ),
        "response_format.json_schema.schema.items.items.items.items.items…",
    ),
]


@pytest.fixture
async def clients(asgi_client, django_client, provider, fake_upstream):
    """Both paths, the key already in the fast front's memo (so the front itself reads
    the body), and the counts of rows a refusal must leave as they are."""
    warm = await asgi_client.post(EXECUTE, json=execute_body("warm"))
    assert warm.status_code == 200, warm.text
    return asgi_client, django_client


async def refused_on_both_paths(
    clients, fake_upstream, path: str, content: bytes, headers: dict | None = None
) -> str:
    """Send `content` through the front and through Django alone: both answer the same
    400; no provider call, no telemetry row, no session, no reservation. The field."""
    before, calls = await rows(), fake_upstream.request_count
    headers = {**JSON, **(headers or {})}
    answers = [await client.post(path, content=content, headers=headers) for client in clients]
    assert answers[0].content == answers[1].content, (answers[0].text, answers[1].text)
    assert answers[0].status_code == answers[1].status_code
    assert await rows() == before
    assert fake_upstream.request_count == calls
    return refused_field(answers[0], path)


@pytest.mark.parametrize(
    ("what", "body", "field"), EXECUTE_CASES, ids=[c[0] for c in EXECUTE_CASES]
)
async def test_execute_refuses_the_field(what, body, field, clients, fake_upstream):
    assert await refused_on_both_paths(clients, fake_upstream, EXECUTE, raw(body)) == field


@pytest.mark.parametrize(("what", "body", "field"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
async def test_chat_refuses_the_field(what, body, field, clients, fake_upstream):
    headers = {"X-Aura-Session-Id": "hostile-chat"}
    named = await refused_on_both_paths(clients, fake_upstream, CHAT, raw(body), headers=headers)
    assert named == (field or "messages[0].content")


@pytest.mark.parametrize("path", [EXECUTE, CHAT])
async def test_a_body_nested_ten_thousand_deep_is_a_400_naming_where(path, clients, fake_upstream):
    """Beyond orjson's own limit (1024) and Python's stack: still the field it is in."""
    if path == EXECUTE:
        text = raw(execute_body("deep-3"))[:-1] + b', "response_schema": {"enum": '
        content = text + nested_text(10_000).encode() + b"}}"
        expected = "response_schema.enum[0][0][0][0][0][0]…"
    else:
        content = b'{"model": "sim-gpt", "messages": ' + nested_text(10_000).encode() + b"}"
        expected = "messages[0][0][0][0][0][0][0]…"
    field = await refused_on_both_paths(clients, fake_upstream, path, content)
    assert field == expected


@pytest.mark.parametrize("path", [EXECUTE, CHAT])
async def test_a_body_that_is_only_nesting_names_the_body(path, clients, fake_upstream):
    field = await refused_on_both_paths(clients, fake_upstream, path, nested_text(10_000).encode())
    assert field == "[0][0][0][0][0][0][0][0]…"


async def test_the_message_says_nested_too_deeply(clients):
    front, _ = clients
    content = raw(execute_body("deep-4"))[:-1] + b', "x": ' + nested_text(3000).encode() + b"}"
    answer = (await front.post(EXECUTE, content=content, headers=JSON)).json()
    assert "nested too deeply" in answer["error_message"]
    assert "64 levels" in answer["error_message"]


@pytest.mark.parametrize("depth", [63, 64, 65, 300])
@pytest.mark.parametrize("path", [EXECUTE, CHAT])
async def test_schemas_up_to_the_depth_limit_run_and_deeper_ones_are_refused(
    depth, path, clients, fake_upstream
):
    """The body's depth, schema included: up to the limit, jsonschema checks the schema
    (and the pipeline the answer) without a RecursionError on either path; beyond it,
    the body parser refuses it first."""
    if path == EXECUTE:
        # body → response_schema: the schema's objects are the body's levels but one.
        schema = schema_chain(depth - 1)
        body = execute_body(f"depth-{depth}", prompt=SCRIPTED, response_schema=schema)
        expected = "response_schema.items.items.items.items.items.items.items…"
    else:
        # body → response_format → json_schema → schema
        body = chat_body(
            messages=[{"role": "user", "content": SCRIPTED}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "n", "schema": schema_chain(depth - 3)},
            },
        )
        expected = "response_format.json_schema.schema.items.items.items.items.items…"
    if depth > 64:
        field = await refused_on_both_paths(clients, fake_upstream, path, raw(body))
        assert field == expected
        return
    for client in clients:
        answer = await client.post(path, content=raw(body), headers=JSON)
        assert answer.status_code == 200, answer.text
        reply = answer.json()
        content = reply["content"] if path == EXECUTE else reply["choices"][0]["message"]["content"]
        assert content == '{"n": 1}'


@pytest.fixture
def internal_url():
    """A server standing for one inside the network: it counts the requests it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.end_headers()
            self.wfile.write(b'{"type": "object"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/internal/schema.json", hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", [EXECUTE, CHAT])
@pytest.mark.parametrize("schema", ["cycle", "remote", "remote inside"])
async def test_a_schema_that_cannot_be_applied_is_refused_before_any_charge(
    path, schema, clients, fake_upstream, internal_url
):
    """`{"$ref": "#"}` recursed without end in the pipeline after the provider answered (a
    500 and a charge), and a remote `$ref` made jsonschema fetch the URL from the worker,
    on its event loop: both are refused with the field, and nothing is fetched."""
    url, hits = internal_url
    value = {
        "cycle": {"$ref": "#"},
        "remote": {"$ref": url},
        "remote inside": {"properties": {"n": {"$ref": url}}},  # only answers with "n" go there
    }[schema]
    # The answer would be {"n": 1}: before, checking it fetched the URL.
    if path == EXECUTE:
        body = execute_body("unusable-1", prompt=SCRIPTED, response_schema=value)
        expected = "response_schema"
    else:
        body = chat_body(
            messages=[{"role": "user", "content": SCRIPTED}],
            response_format={"type": "json_schema", "json_schema": {"schema": value}},
        )
        expected = "response_format.json_schema"
    assert await refused_on_both_paths(clients, fake_upstream, path, raw(body)) == expected
    assert hits == []


async def test_a_body_in_another_charset_meets_the_same_rules(clients):
    """Django reads the charset DRF decodes with (the front leaves such bodies to it)."""
    headers = {"Content-Type": "application/json; charset=utf-16"}
    for client in clients:
        good = json.dumps(execute_body("utf16-1", prompt="Plan é")).encode("utf-16")
        assert (await client.post(EXECUTE, content=good, headers=headers)).status_code == 200
        bad = json.dumps(execute_body("utf16-2", prompt="a\x00")).encode("utf-16")
        answer = await client.post(EXECUTE, content=bad, headers=headers)
        assert refused_field(answer, EXECUTE) == "prompt"


async def test_every_json_endpoint_reads_bodies_through_the_same_parser(clients, provider):
    """Not only the hot two: /estimate (DRF's parser, set project-wide) too."""
    _, django = clients
    body = {"operation_type": "planning", "prompt": "x", "providers": ["primary\x00"]}
    answer = await django.post("/api/v1/estimate", content=raw(body), headers=JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"]["fields"] == {"providers[0]": [answer.json()["error_message"]]}


@pytest.mark.parametrize("path", [EXECUTE, CHAT])
async def test_brackets_and_escapes_inside_strings_are_only_text(path, clients):
    """What the cheap scans see (a hundred `[`, a written-out `\\u0000`) is no refusal."""
    text = "[" * 100 + "{" * 100 + "\\u0000"
    body = execute_body("text-1", prompt=text) if path == EXECUTE else chat_body(user=text)
    for client in clients:
        answer = await client.post(path, content=raw(body), headers=JSON)
        assert answer.status_code == 200, answer.text


async def test_a_long_conversation_is_no_deeper_for_being_long(clients):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": f"part {i}"}]} for i in range(200)
    ]
    for client in clients:
        answer = await client.post(CHAT, content=raw(chat_body(messages=messages)), headers=JSON)
        assert answer.status_code == 200, answer.text
