"""The sliding windows, in a real Redis and in the database: exact under concurrency,
all or none, tokens corrected to actual usage, calls in flight freed on their end or by
expiry."""

import asyncio
import time
import uuid

import pytest

from aura_orchestrator.ratelimit.window import Check, Kind

# The database store's rows, written from db() threads: a real transaction each.
pytestmark = pytest.mark.django_db(transaction=True)


async def _admit_all(windows, checks: list[Check], n: int, in_flight=30.0):
    ids = [uuid.uuid4() for _ in range(n)]
    decisions = await asyncio.gather(
        *[windows.admit(checks, call_id=i, in_flight_seconds=in_flight) for i in ids]
    )
    return list(zip(ids, decisions, strict=True))


async def test_sixty_a_minute_under_two_hundred_at_once_admits_exactly_sixty(
    make_windows, window_key
):
    windows = make_windows()
    check = Check(key=window_key, kind=Kind.REQUESTS, limit=60)
    started = time.monotonic()
    results = await _admit_all(windows, [check], 200)
    took = time.monotonic() - started
    admitted = [d for _, d in results if d.admitted]
    refused = [d for _, d in results if not d.admitted]
    assert len(admitted) == 60
    assert sorted(d.standings[0].remaining for d in admitted) == list(range(60))
    for decision in refused:
        assert decision.refused_by == check and decision.standings[0].remaining == 0
        # room comes back when the oldest admitted call leaves the minute
        assert 60 - took - 0.1 < decision.retry_after_seconds <= 60


async def test_a_window_gives_room_back_as_its_calls_leave_it(make_windows, window_key):
    windows = make_windows(window_seconds=0.5)
    check = Check(key=window_key, kind=Kind.REQUESTS, limit=3)
    first = await _admit_all(windows, [check], 5)
    assert sum(d.admitted for _, d in first) == 3
    wait = max(d.retry_after_seconds for _, d in first if not d.admitted)
    assert 0 < wait <= 0.5
    await asyncio.sleep(wait + 0.05)
    again = await _admit_all(windows, [check], 5)
    assert sum(d.admitted for _, d in again) == 3


async def test_tokens_are_held_at_the_worst_case_and_corrected_to_actual_usage(
    make_windows, window_key
):
    windows = make_windows()
    worst = Check(key=window_key, kind=Kind.TOKENS, limit=1000, cost=300)
    results = await _admit_all(windows, [worst], 5)
    admitted = [i for i, d in results if d.admitted]
    assert len(admitted) == 3
    refused = next(d for _, d in results if not d.admitted)
    assert refused.standings[0].remaining == 100
    for call_id in admitted:
        await windows.end([worst], call_id=call_id, tokens_used=100)
    # 300 used of 1000: two more worst cases fit, not three
    after = await _admit_all(windows, [worst], 3)
    assert sum(d.admitted for _, d in after) == 2
    # a call whose worst case can never fit is told so (a whole window), not to retry soon
    huge = await windows.admit(
        [Check(key=window_key, kind=Kind.TOKENS, limit=1000, cost=5000)],
        call_id=uuid.uuid4(),
        in_flight_seconds=30,
    )
    assert not huge.admitted and huge.retry_after_seconds == 60


async def test_calls_in_flight_are_capped_and_freed_on_their_end(make_windows, window_key):
    windows = make_windows()
    check = Check(key=window_key, kind=Kind.IN_FLIGHT, limit=5)
    results = await _admit_all(windows, [check], 50)
    admitted = [i for i, d in results if d.admitted]
    assert len(admitted) == 5
    assert (
        await windows.admit([check], call_id=uuid.uuid4(), in_flight_seconds=30)
    ).admitted is False
    await windows.end([check], call_id=admitted[0], tokens_used=None)
    assert (
        await windows.admit([check], call_id=uuid.uuid4(), in_flight_seconds=30)
    ).admitted is True


async def test_a_killed_workers_calls_in_flight_expire(make_windows, window_key):
    """Nobody ends them: their slots come back when their expiry passes."""
    windows = make_windows()
    check = Check(key=window_key, kind=Kind.IN_FLIGHT, limit=2)
    assert sum(d.admitted for _, d in await _admit_all(windows, [check], 4, in_flight=0.3)) == 2
    await asyncio.sleep(0.35)
    assert sum(d.admitted for _, d in await _admit_all(windows, [check], 4)) == 2


async def test_a_refusal_by_one_limit_takes_nothing_from_the_others(make_windows, window_key):
    windows = make_windows()
    roomy = Check(key=f"{window_key}-key", kind=Kind.REQUESTS, limit=100)
    tight = Check(key=f"{window_key}-user", kind=Kind.REQUESTS, limit=2)
    results = await _admit_all(windows, [roomy, tight], 10)
    assert sum(d.admitted for _, d in results) == 2
    assert all(d.refused_by == tight for _, d in results if not d.admitted)
    alone = await windows.admit([roomy], call_id=uuid.uuid4(), in_flight_seconds=30)
    assert alone.standings[0].remaining == 100 - 2 - 1
