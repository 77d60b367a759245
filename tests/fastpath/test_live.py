"""The fast front under a real `manage.py serve` (uvicorn + httptools): a client that
closes the connection mid-stream is noticed and charged what it received.

Unlike the other live-server tests, this server keeps the per-process memo on (the fast
path needs it) and logs at DEBUG, where the front names every request it delegates.
"""

import time

import httpx
import pytest

from budgets.models import LlmSession
from telemetry.models import OperationTelemetry

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stream_served_by_the_front_is_settled_when_the_client_leaves(
    live_server_factory, api_key, provider, fake_upstream
):
    server = live_server_factory(1, AURA_CONFIG_CACHE_SECONDS="30", LOG_LEVEL="DEBUG")
    url = f"{server.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {api_key.raw_key}", "X-Aura-Session-Id": "live-1"}
    ask = {"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=30) as http:
        warm = {**headers, "X-Aura-Session-Id": "live-warm"}
        assert http.post(url, json=ask, headers=warm).status_code == 200  # fills the memo
    delegated_before = server.log_tail(10**7).count("/v1/chat/completions delegated")
    assert delegated_before >= 1

    fake_upstream.stream_chunk_delay = 0.1
    try:
        words = " ".join(f"word{i}" for i in range(60))
        streamed = {
            "model": "sim-gpt",
            "stream": True,
            "messages": [{"role": "user", "content": f"[[content:{words}]]"}],
        }
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", url, json=streamed, headers=headers) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["x-frame-options"] == "DENY"
            operation_id = response.headers["x-aura-operation-id"]
            received = 0
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content":"word' in line:
                    received += 1
                    if received == 3:
                        break
    finally:
        fake_upstream.stream_chunk_delay = 0.0

    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        row = OperationTelemetry.objects.filter(operation_id=operation_id).first()
        time.sleep(0.05)
    assert row is not None, server.log_tail()
    assert (row.error_code, row.streamed) == ("client_disconnected", True)
    assert 3 <= row.tokens_out < 60
    session = LlmSession.objects.get(session_id="live-1")
    assert (session.tokens_reserved, session.cost_reserved_micros) == (0, 0)
    assert session.tokens_used == row.tokens_in + row.tokens_out
    log = server.log_tail(10**7)
    assert log.count("/v1/chat/completions delegated") == delegated_before, "served by Django"
