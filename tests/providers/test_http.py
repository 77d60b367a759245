"""Shared client per event loop, Retry-After parsing and the SSE parser."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from aura_orchestrator.providers import close_clients, get_client
from aura_orchestrator.providers.http import iter_sse, parse_retry_after


def test_clients_belong_to_their_event_loop_and_take_turns():
    from aura_orchestrator.providers.http import POOL_SHARDS

    async def use() -> list[httpx.AsyncClient]:
        clients = [get_client() for _ in range(2 * POOL_SHARDS)]
        assert all(c.follow_redirects is False for c in clients)
        assert len({id(c) for c in clients}) == POOL_SHARDS  # each pool used in turn
        assert clients[:POOL_SHARDS] == clients[POOL_SHARDS:]
        await close_clients()
        return clients

    first = asyncio.run(use())
    second = asyncio.run(use())
    assert not {id(c) for c in first} & {id(c) for c in second}


@pytest.mark.asyncio
async def test_close_clients_closes_and_new_clients_follow():
    client = get_client()
    await close_clients()
    assert client.is_closed
    assert get_client() is not client
    await close_clients()


def test_get_client_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        get_client()


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
