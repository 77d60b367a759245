"""`pipeline.execute_stream` directly: however a stream ends, it is settled exactly once."""

import asyncio
import gc

import pytest

from aura_orchestrator import pipeline
from aura_orchestrator.db import db
from aura_orchestrator.providers.base import ChatMessage
from budgets.models import LlmSession
from presets.operation_types import OperationType
from telemetry.models import OperationTelemetry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _request(session_id: str) -> pipeline.OperationRequest:
    words = " ".join(f"w{i}" for i in range(20))
    return pipeline.OperationRequest(
        session_id=session_id,
        operation_type=OperationType.COMPLETION,
        messages=(ChatMessage(role="user", content=f"[[content:{words}]]"),),
        source="gateway",
    )


def _principal(api_key) -> pipeline.Principal:
    return pipeline.Principal(project_id=api_key.api_key.project_id, api_key_id=api_key.api_key.pk)


async def _telemetry(session_id: str, wait_seconds: float = 5.0) -> OperationTelemetry:
    for _ in range(int(wait_seconds / 0.05)):
        row = await OperationTelemetry.objects.filter(session_id=session_id).afirst()
        if row is not None:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"no telemetry for session {session_id}")


async def test_a_stream_closed_after_two_chunks_is_charged_only_what_it_consumed(
    api_key, provider, fake_upstream
):
    """Closing the iterator (what the server does when the client goes) settles at once:
    prompt + the two text chunks received, the reservation handed back, telemetry says so."""
    stream = await pipeline.execute_stream(_request("closed-1"), principal=_principal(api_key))
    assert stream.error is None and stream.result is None
    texts = []
    async for chunk in stream.chunks:
        if chunk.delta:
            texts.append(chunk.delta)
            if len(texts) == 2:
                break
    await stream.chunks.aclose()
    result = stream.result
    assert result is not None and result.error.code == "client_disconnected"
    assert result.content == "".join(texts) == "w0 w1 "
    session = await LlmSession.objects.aget(session_id="closed-1")
    assert (session.tokens_reserved, session.cost_reserved_micros) == (0, 0)
    row = await _telemetry("closed-1")
    assert session.tokens_used == row.tokens_in + row.tokens_out
    assert session.operation_count == 1 and row.streamed and not row.success


async def test_a_stream_dropped_before_its_first_byte_is_still_settled(
    api_key, provider, fake_upstream
):
    """A client gone between the provider's first chunk and our first byte: the stream is
    never read, only dropped. Its collection settles it (no reservation left for the
    expiry job) and writes telemetry."""
    stream = await pipeline.execute_stream(_request("dropped-1"), principal=_principal(api_key))
    assert stream.error is None
    del stream
    gc.collect()
    row = await _telemetry("dropped-1")
    assert (row.error_code, row.tokens_out) == ("client_disconnected", 0)
    session = await LlmSession.objects.aget(session_id="dropped-1")
    assert (session.tokens_reserved, session.tokens_used) == (0, row.tokens_in)
    assert await db(lambda: session.reservations.count()) == 0
