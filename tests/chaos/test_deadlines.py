"""Deadlines: a provider that drips its answer (alive, never done) is cut at the
operation's deadline, and a reservation never outlives its operation (so the expiry job
cannot hand back a running operation's budget and let a hard cap be overspent)."""

import asyncio
import time

import pytest

from aura_orchestrator.simulator import FakeUpstream, Fault
from presets.models import OperationPreset
from tests.chaos.harness import (
    Call,
    Verdict,
    client_for,
    fire,
    invariants,
    release_expired_in_thread,
    row_violations,
    send,
)
from tests.conftest import sim_provider
from tests.pipeline.helpers import prompt_tokens

pytestmark = pytest.mark.django_db(transaction=True)

DRIP = 0.5  # one byte every half second: ~2 minutes for a whole answer


@pytest.fixture
def second_upstream():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


def test_dripping_upstream_is_cut_at_the_deadline(
    chaos_server, api_key, chaos_provider, chaos_upstream, second_upstream
):
    # `primary` drips from the first byte; `streamer` sends its first events at once
    # (the stream has begun for the client), then drips.
    sim_provider(second_upstream, name="streamer")
    # The gateway's operation type (completion): a 2 s deadline, no retry.
    OperationPreset.objects.create(
        operation_type="completion",
        temperature=0.7,
        top_p=0.9,
        max_tokens=100,
        timeout_seconds=2,
        max_retries=0,
        cache_enabled=False,
        cache_ttl_seconds=3600,
    )
    chaos_upstream.enqueue(Fault(drip=DRIP), Fault(drip=DRIP))
    second_upstream.enqueue(Fault(drip=DRIP, drip_after=450))
    server = chaos_server(1)
    words = "[[content:one two three four five six seven eight nine ten]]"
    calls = [
        Call(
            "execute",
            "drip-execute",
            {
                "session_id": "drip-execute",
                "operation_type": "planning",
                "prompt": "Plan a video about slow rivers",
                "providers": ["primary"],
                "custom_preset": {"timeout_seconds": 2, "max_retries": 0, "max_tokens": 100},
            },
        ),
        Call(
            "chat",
            "drip-chat",
            {"model": "primary/sim-gpt", "messages": [{"role": "user", "content": "hello"}]},
            {"X-Aura-Session-Id": "drip-chat"},
        ),
        Call(
            "stream",
            "drip-stream",
            {
                "model": "streamer/sim-gpt",
                "stream": True,
                "messages": [{"role": "user", "content": words}],
            },
            {"X-Aura-Session-Id": "drip-stream"},
        ),
    ]
    # A client timeout bounds the test while the deadline is not enforced (it would hang
    # for the whole drip, minutes).
    outcomes = asyncio.run(fire(server.url, api_key.raw_key, calls, client_timeout=15))
    execute, chat, stream = outcomes
    figures = {f"{o.call.kind}_s": round(o.ended - o.started, 2) for o in outcomes}
    figures["stream_end"] = stream.stream_end
    verdict = Verdict("test_dripping_upstream_is_cut_at_the_deadline", outcomes, figures=figures)
    for o in outcomes:
        seconds = o.ended - o.started
        verdict.check(
            f"{o.call.kind}:ends<5s",
            [] if seconds < 5 and not o.error else [f"took {seconds:.1f}s ({o.error or o.status})"],
        )
    verdict.check(
        "execute:504_timeout",
        []
        if (execute.status, execute.error_code) == (504, "timeout")
        else [f"answered {execute.status} {execute.error_code}"],
    )
    verdict.check(
        "chat:504_timeout",
        []
        if (chat.status, chat.error_code) == (504, "timeout")
        else [f"answered {chat.status} {chat.error_code}"],
    )
    # The stream had begun (200): it must end with an error event, within the deadline.
    verdict.check(
        "stream:error_event",
        []
        if (stream.status, stream.stream_end, stream.error_code) == (200, "error", "timeout")
        else [f"answered {stream.status}, ended {stream.stream_end} ({stream.error_code})"],
    )
    verdict.settle_and_check(
        {
            "d:one_row_each": lambda: row_violations(outcomes),
            **invariants(server),
        },
        timeout=5,
    )
    figures["server_log"] = server.log_problems()
    verdict.report()


CAP = 50
MAX_TOKENS = 20
TTL = 3


def test_reservation_outlives_nothing(chaos_server, api_key, chaos_provider, chaos_upstream):
    """A hard cap of 50 tokens; each call's worst case is ~30 tokens and its usage exactly
    that. The first call is slow (longer than the reservation's 3 s life); the expiry job
    runs every 0.5 s; a second call comes once the first's reservation has expired. The
    cap must hold: the slow call is cut at its deadline (below the reservation's life)
    rather than settled after its budget was handed back."""
    prompt = "Summarise the tides video"
    worst = prompt_tokens(prompt) + MAX_TOKENS
    assert worst <= CAP < 2 * worst
    chaos_upstream.enqueue(
        Fault(delay=2 * TTL, usage=(prompt_tokens(prompt), MAX_TOKENS)),
        Fault(usage=(prompt_tokens(prompt), MAX_TOKENS)),
    )
    server = chaos_server(
        1, BUDGET_RESERVATION_TTL_SECONDS=str(TTL), BUDGET_RESERVATION_MARGIN_SECONDS="1"
    )
    payload = {
        "session_id": "overspend",
        "operation_type": "planning",
        "prompt": prompt,
        "enable_cache": False,
        "custom_preset": {"max_tokens": MAX_TOKENS, "max_retries": 0},
        "budget_constraint": {"max_tokens_per_session": CAP, "enforce_hard_limits": True},
    }
    figures: dict = {"released": 0}

    async def scenario() -> list:
        async with client_for(server.url, api_key.raw_key, timeout=20, connections=4) as client:
            t0 = time.monotonic()
            slow = asyncio.ensure_future(send(client, Call("execute", "overspend", payload), t0))
            second = None
            while not slow.done() or second is None:
                await asyncio.sleep(0.5)
                figures["released"] += await asyncio.to_thread(release_expired_in_thread)
                if second is None and time.monotonic() - t0 > TTL + 1.5:
                    second = await send(client, Call("execute", "overspend", payload), t0)
                if time.monotonic() - t0 > 15:
                    break
            return [await slow, second]

    outcomes = asyncio.run(scenario())
    slow, second = outcomes
    figures.update(
        slow=f"{slow.status} {slow.error_code} in {slow.ended - slow.started:.1f}s",
        second=f"{second.status} {second.error_code}",
    )
    verdict = Verdict("test_reservation_outlives_nothing", outcomes, figures=figures)
    verdict.settle_and_check(
        {
            "d:one_row_each": lambda: row_violations(outcomes),
            **invariants(server, caps="b:used<=cap"),
        },
        timeout=5,
    )
    verdict.check(
        "a:statuses",
        []
        if {o.status for o in outcomes} <= {200, 402, 504}
        else [f"statuses {[o.status for o in outcomes]}"],
    )
    figures["server_log"] = server.log_problems()
    verdict.report()
