"""Shared client per event loop, Retry-After parsing and the SSE parser."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from aura_orchestrator.providers import close_transports, get_transport
from aura_orchestrator.providers.http import iter_sse, json_request, parse_retry_after, send


def test_transports_belong_to_their_event_loop_and_take_turns():
    from aura_orchestrator.providers.http import POOL_SHARDS

    async def use() -> list[httpx.AsyncHTTPTransport]:
        transports = [get_transport() for _ in range(2 * POOL_SHARDS)]
        assert len({id(t) for t in transports}) == POOL_SHARDS  # each pool used in turn
        assert transports[:POOL_SHARDS] == transports[POOL_SHARDS:]
        await close_transports()
        return transports

    first = asyncio.run(use())
    second = asyncio.run(use())
    assert not {id(t) for t in first} & {id(t) for t in second}


@pytest.mark.asyncio
async def test_closing_the_transports_brings_new_ones():
    transport = get_transport()
    await close_transports()
    assert get_transport() is not transport
    await close_transports()


def test_get_transport_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        get_transport()


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_send_through_a_transport_reads_like_a_client(stream):
    """The pipeline's path (straight to a transport) gives the same response as a client:
    the body read and the connection handed back, or streamed and closed by the caller."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.headers["content-type"]))
        return httpx.Response(200, json={"ok": True})

    request = json_request("http://up.test/v1/x", {"a": 1}, headers={"X": "y"}, timeout=5)
    via_transport = await send(httpx.MockTransport(handler), request, stream=stream)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        via_client = await send(client, request, stream=stream)
        for response in (via_transport, via_client):
            if stream:
                await response.aread()
                await response.aclose()
            assert response.status_code == 200 and response.json() == {"ok": True}
            assert response.request is request
    assert seen == [("POST", "http://up.test/v1/x", "application/json")] * 2
    assert request.extensions["timeout"]["read"] == 5


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "5"}, 5.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "Wed, 01 Jan 2025 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 01 Jan 2025 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "junk", "Retry-After": "2"}, 2.0),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(httpx.Headers(headers), now=NOW) == expected


@pytest.mark.asyncio
async def test_iter_sse_follows_the_event_stream_rules():
    body = (
        b": comment\n"
        b'event: message_start\ndata: {"a":\n'
        b"data: 1}\n\n"
        b"data:no-space\r\n\r\n"
        b"\n\n"
        b"data: tail-without-blank-line"
    )
    response = httpx.Response(200, content=body)
    events = [(event.event, event.data) async for event in iter_sse(response)]

    assert events == [
        ("message_start", '{"a":\n1}'),
        (None, "no-space"),
        (None, "tail-without-blank-line"),
    ]
