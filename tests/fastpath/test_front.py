"""The fast ASGI front over HTTP, in-process: what it serves itself answers like Django
(status, body, headers); what it delegates gets Django's own answer; a stream it serves
is settled however it ends."""

import asyncio
import json

import httpx
import pytest

from aura_orchestrator import asgi, pipeline
from aura_orchestrator.caching import config_cache
from aura_orchestrator.fastpath import wrap
from aura_orchestrator.fastpath.app import FastFront
from aura_orchestrator.tenancy.models import ApiKey
from budgets.models import LlmSession
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
# Differ between any two responses: ids, timings, lengths.
VOLATILE = {"content-length", "x-aura-operation-id", "date"}


@pytest.fixture
def django_calls(monkeypatch):
    """The paths of the requests the front handed to Django, in order."""
    front = asgi.application
    assert isinstance(front, FastFront), "the test settings keep the fast path on"
    calls: list[str] = []
    inner = front.app

    async def counting(scope, receive, send):
        calls.append(scope.get("path", scope["type"]))
        await inner(scope, receive, send)

    monkeypatch.setattr(front, "app", counting)
    return calls


def header_names(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VOLATILE}


def same_shape(a: object, b: object) -> bool:
    """Equal keys at every level (values differ: ids, timings)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_shape(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) or None in (a, b)


async def test_execute_is_served_by_the_fast_path_once_the_key_is_memoized(
    asgi_client, django_client, django_calls, provider, fake_upstream
):
    """The first request (key not in the memo) is Django's, which fills the memo; the
    next is the fast path's, and it answers what Django answers to the same request."""
    first = await asgi_client.post(EXECUTE, json=body("fast-1"))
    assert django_calls == [EXECUTE]
    fast = await asgi_client.post(EXECUTE, json=body("fast-1"))
    assert django_calls == [EXECUTE], "served without Django"
    plain = await django_client.post(EXECUTE, json=body("fast-1"))

    for response in (first, fast, plain):
        assert response.status_code == 200, response.text
    assert header_names(fast) == header_names(plain) == header_names(first)
    assert fast.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert same_shape(fast.json(), plain.json())
    assert fast.json()["content"] == plain.json()["content"]
    assert fast.json()["budget"]["operation_count"] == 2
    assert fast.json()["telemetry"]["source"] == "api"
    rows = OperationTelemetry.objects.filter(session_id="fast-1")
    assert await rows.acount() == 3
    session = await LlmSession.objects.aget(session_id="fast-1")
    assert (session.operation_count, session.tokens_reserved) == (3, 0)


async def test_execute_with_every_supported_field_matches_django(
    asgi_client, django_client, django_calls, provider, fake_upstream
):
    full = body(
        "full-1",
        system_prompt="Be terse.",
        enable_cache=False,
        cache_ttl_seconds=60,
        providers=["primary"],
        model="sim-gpt",
        budget_constraint={"max_tokens_per_session": 100_000, "max_cost_per_session": "5"},
        custom_preset={"temperature": 0.2, "max_tokens": 50, "max_retries": 0},
        response_schema={"type": "object"},
        prompt='[[content:{"n": 1}]]',
    )
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()
    fast = await asgi_client.post(EXECUTE, json=full)
    assert django_calls == []
    plain = await django_client.post(EXECUTE, json={**full, "session_id": "full-2"})
    assert fast.status_code == plain.status_code == 200, fast.text
    assert header_names(fast) == header_names(plain)
    assert same_shape(fast.json(), plain.json())
    f, p = fast.json(), plain.json()
    assert f["content"] == p["content"] == '{"n": 1}'
    assert f["budget"]["remaining_tokens"] == p["budget"]["remaining_tokens"]
    assert f["telemetry"]["temperature"] == 0.2 and f["telemetry"]["max_tokens"] == 50
    sent = fake_upstream.requests[-2]
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}


async def test_execute_with_messages_and_tools_matches_django(
    asgi_client, django_client, django_calls, provider, fake_upstream
):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    chat = {
        "operation_type": "completion",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()
    fast = await asgi_client.post(EXECUTE, json={**chat, "session_id": "tools-1"})
    assert django_calls == []
    plain = await django_client.post(EXECUTE, json={**chat, "session_id": "tools-2"})
    assert fast.status_code == plain.status_code == 200, fast.text
    assert header_names(fast) == header_names(plain)
    assert same_shape(fast.json(), plain.json())
    f, p = fast.json(), plain.json()
    assert [c["function"] for c in f["tool_calls"]] == [c["function"] for c in p["tool_calls"]]
    assert f["tool_calls"][0]["function"]["name"] == "lookup"
    assert fake_upstream.requests[-1]["tools"] == fake_upstream.requests[-2]["tools"] == [tool]


async def test_a_failed_operation_has_the_same_status_body_and_headers(
    asgi_client, django_client, django_calls, provider, fake_upstream
):
    """A refusal by the budget (402) is rendered by the same function on both paths."""
    capped = body("capped-1", budget_constraint={"max_tokens_per_operation": 1})
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()
    fast = await asgi_client.post(EXECUTE, json=capped)
    assert django_calls == []
    plain = await django_client.post(EXECUTE, json=capped)
    assert fast.status_code == plain.status_code == 402
    assert header_names(fast) == header_names(plain)
    f, p = fast.json(), plain.json()
    assert same_shape(f, p)
    assert (f["error_code"], f["error_message"]) == (p["error_code"], p["error_message"])


async def test_an_unexpected_error_is_rendered_as_djangos_exception_handler_does(
    asgi_client, django_client, django_calls, provider, monkeypatch
):
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()

    async def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(pipeline, "execute", broken)
    fast = await asgi_client.post(EXECUTE, json=body("bug-1"))
    assert django_calls == []
    plain = await django_client.post(EXECUTE, json=body("bug-1"))
    assert fast.status_code == plain.status_code == 500
    assert fast.json() == plain.json()
    assert fast.json()["error_code"] == "internal_error"
    assert header_names(fast) == header_names(plain)


BAD = [
    # (what, raw body, extra headers) -> Django's canonical answer
    # (bodies the parser refuses are the front's own: test_front_refusals.py)
    ("form body", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("no key", json.dumps(body()).encode(), {"Authorization": ""}),
    ("unknown key", json.dumps(body()).encode(), {"Authorization": "Bearer aura_xx_yy"}),
    ("basic auth", json.dumps(body()).encode(), {"Authorization": "Basic dTpw"}),
    ("html only", json.dumps(body()).encode(), {"Accept": "text/html"}),
    ("bad host", json.dumps(body()).encode(), {"Host": "evil.example"}),
]


@pytest.mark.parametrize(("what", "raw", "headers"), BAD, ids=[b[0] for b in BAD])
async def test_requests_that_are_not_clean_get_djangos_own_answer(
    what, raw, headers, asgi_client, django_client, django_calls, provider
):
    await asgi_client.post(EXECUTE, json=body("warm"))  # the key is in the memo
    django_calls.clear()
    headers = {"Content-Type": "application/json", **headers}
    fast = await asgi_client.post(EXECUTE, content=raw, headers=headers)
    assert django_calls == [EXECUTE], f"{what} was delegated"
    plain = await django_client.post(EXECUTE, content=raw, headers=headers)
    assert fast.status_code == plain.status_code
    assert fast.status_code in (400, 401, 406, 415), fast.text
    assert fast.content == plain.content
    assert header_names(fast) == header_names(plain)


async def test_a_coerced_or_unknown_field_is_a_400_from_the_front(
    asgi_client, django_calls, provider
):
    """Django's serializer once ignored unknown fields and coerced "false" (a 200); the one
    parser refuses both, and the front answers that itself."""
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()
    response = await asgi_client.post(
        EXECUTE, json=body("odd-1", enable_cache="false", client_tag="x")
    )
    assert response.status_code == 400 and django_calls == []
    assert set(response.json()["details"]["fields"]) == {"enable_cache", "client_tag"}


async def test_a_memo_miss_is_delegated_and_the_next_request_is_fast(
    asgi_client, django_calls, provider, api_key
):
    await asgi_client.post(EXECUTE, json=body("memo-1"))
    await asgi_client.post(EXECUTE, json=body("memo-1"))
    assert django_calls == [EXECUTE]
    config_cache.clear()  # e.g. a configuration change elsewhere
    await asgi_client.post(EXECUTE, json=body("memo-1"))
    await asgi_client.post(EXECUTE, json=body("memo-1"))
    assert django_calls == [EXECUTE, EXECUTE]
    # last_used_at is due for its once-a-minute update: the front still serves the
    # request and writes it in a thread, once.
    memoized = next(v[2] for k, v in config_cache._memo.items() if k[0] == "api-key").api_key
    memoized.last_used_at = None
    await ApiKey.objects.filter(pk=memoized.pk).aupdate(last_used_at=None)
    ok = await asgi_client.post(EXECUTE, json=body("memo-1"))
    assert ok.status_code == 200 and django_calls == [EXECUTE, EXECUTE]
    assert memoized.last_used_at is not None
    stored = await ApiKey.objects.aget(pk=memoized.pk)
    assert stored.last_used_at == memoized.last_used_at


async def test_gateway_completions_are_served_by_the_fast_path_like_django(
    asgi_client, django_client, django_calls, provider, fake_upstream
):
    chat = {
        "model": "sim-gpt",
        "messages": [{"role": "user", "content": "Name a colour"}],
        "temperature": 0.3,
        "metadata": {"session_id": "gw-1"},
    }
    headers = {"X-Aura-Operation-Type": "Creative", "x-aura-enable-cache": "no"}
    await asgi_client.post(CHAT, json=chat, headers=headers)
    assert django_calls == [CHAT]
    fast = await asgi_client.post(CHAT, json=chat, headers=headers)
    assert django_calls == [CHAT]
    plain = await django_client.post(CHAT, json=chat, headers=headers)
    assert fast.status_code == plain.status_code == 200
    assert header_names(fast) == header_names(plain)
    assert fast.headers["x-aura-session-id"] == "gw-1"
    f, p = fast.json(), plain.json()
    assert same_shape(f, p) and f["choices"] == p["choices"] and f["usage"] == p["usage"]
    rows = OperationTelemetry.objects.filter(session_id="gw-1", operation_type="creative")
    assert await rows.acount() == 3
    # A body chat_call_from refuses: Django's 400 in OpenAI's shape, answered by the front
    # itself (test_front_refusals.py compares the bytes).
    django_calls.clear()
    bad = await asgi_client.post(CHAT, json={**chat, "n": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"
    assert django_calls == []


async def test_gateway_streams_are_served_by_the_fast_path_like_django(
    asgi_client, django_client, django_calls, provider, fake_upstream
):
    chat = {
        "model": "sim-gpt",
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"X-Aura-Session-Id": "stream-1"}
    await asgi_client.post(CHAT, json={**chat, "stream": False}, headers=headers)
    django_calls.clear()
    fast = await asgi_client.post(CHAT, json=chat, headers=headers)
    assert django_calls == []
    plain = await django_client.post(CHAT, json=chat, headers=headers)
    assert fast.status_code == plain.status_code == 200
    assert header_names(fast) == header_names(plain)
    assert fast.headers["content-type"] == "text/event-stream"

    def events(response):
        return [line.removeprefix("data: ") for line in response.text.split("\n\n") if line.strip()]

    f, p = events(fast), events(plain)
    assert f[-1] == p[-1] == "[DONE]" and len(f) == len(p)
    assert json.loads(f[-2])["usage"] == json.loads(p[-2])["usage"]
    session = await LlmSession.objects.aget(session_id="stream-1")
    assert (session.operation_count, session.tokens_reserved) == (3, 0)


# --- Streams that end early: the front driven directly, as a server drives it ---------------


class Client:
    """An ASGI server's side of one request: the body, then (when told) a disconnect."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.sent_body = False
        self.gone = asyncio.Event()
        self.messages: list[dict] = []
        self.chunks = asyncio.Queue()

    async def receive(self) -> dict:
        if not self.sent_body:
            self.sent_body = True
            return {"type": "http.request", "body": self.raw, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            await self.chunks.put(message["body"])


def chat_scope(api_key, raw: bytes, session_id: str) -> dict:
    headers = {
        "host": "testserver",
        "content-type": "application/json",
        "content-length": str(len(raw)),
        "authorization": f"Bearer {api_key.raw_key}",
        "x-aura-session-id": session_id,
    }
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


def slow_chat() -> bytes:
    words = " ".join(f"word{i}" for i in range(40))
    return json.dumps(
        {
            "model": "sim-gpt",
            "stream": True,
            "messages": [{"role": "user", "content": f"[[content:{words}]]"}],
        }
    ).encode()


@pytest.fixture
def slow_stream(fake_upstream):
    fake_upstream.stream_chunk_delay = 0.05
    yield
    fake_upstream.stream_chunk_delay = 0.0


async def _settled(session_id: str) -> tuple[LlmSession, OperationTelemetry]:
    for _ in range(200):
        row = await OperationTelemetry.objects.filter(session_id=session_id).afirst()
        if row is not None:
            return await LlmSession.objects.aget(session_id=session_id), row
        await asyncio.sleep(0.05)
    raise AssertionError(f"no telemetry for {session_id}")


async def _stream_started(asgi_client, django_calls, api_key, session_id: str, *, chunks: int):
    """A slow stream served straight by the front (the key memoized first), once the
    client has received `chunks` chunks of it."""
    await asgi_client.post(EXECUTE, json=body("warm"))
    django_calls.clear()
    raw = slow_chat()
    client = Client(raw)
    served = asyncio.create_task(
        asgi.application(chat_scope(api_key, raw, session_id), client.receive, client.send)
    )
    for _ in range(chunks):
        await asyncio.wait_for(client.chunks.get(), 10)
    return client, served


async def test_a_client_gone_mid_stream_is_charged_what_it_received(
    asgi_client, django_calls, api_key, provider, fake_upstream, slow_stream
):
    client, served = await _stream_started(
        asgi_client,
        django_calls,
        api_key,
        "gone-1",
        chunks=3,  # role chunk + two words
    )
    client.gone.set()
    await asyncio.wait_for(served, 10)  # returns quietly, as Django's handler does
    assert django_calls == []
    session, row = await _settled("gone-1")
    assert (row.success, row.error_code, row.streamed) == (False, "client_disconnected", True)
    assert 1 <= row.tokens_out < 40
    assert (session.tokens_reserved, session.cost_reserved_micros) == (0, 0)
    assert session.tokens_used == row.tokens_in + row.tokens_out
    assert client.messages[-1]["more_body"] is True, "the body was never finished"


async def test_a_cancelled_server_task_settles_the_stream(
    asgi_client, django_calls, api_key, provider, fake_upstream, slow_stream
):
    _, served = await _stream_started(asgi_client, django_calls, api_key, "cancelled-1", chunks=2)
    served.cancel()  # the server shutting down
    with pytest.raises(asyncio.CancelledError):
        await served
    assert django_calls == []
    session, row = await _settled("cancelled-1")
    assert row.error_code == "client_disconnected"
    assert (session.tokens_reserved, session.cost_reserved_micros) == (0, 0)


# --- Routing and the setting -------------------------------------------------------------------


async def test_other_requests_and_lifespan_go_straight_to_django():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], scope.get("method"), scope.get("path")))

    front = FastFront(app)
    await front({"type": "lifespan"}, None, None)
    for method, path in [("GET", EXECUTE), ("POST", EXECUTE + "/"), ("POST", "/v1/models")]:
        await front({"type": "http", "method": method, "path": path}, None, None)
    assert seen == [
        ("lifespan", None, None),
        ("http", "GET", EXECUTE),
        ("http", "POST", EXECUTE + "/"),
        ("http", "POST", "/v1/models"),
    ]


def test_the_setting_turns_the_front_off(settings):
    app = object()
    assert isinstance(wrap(app), FastFront)
    settings.AURA = {**settings.AURA, "FAST_PATH": False}
    assert wrap(app) is app
