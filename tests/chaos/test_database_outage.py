"""PostgreSQL hangs for 1.5 s under load (queries in flight wait), then dies (every
connection reset, new ones refused) for 1.5 s, then comes back: 503 only during the
outage, every 200 keeps its telemetry row (a finish that could not be written is
journaled and replayed), the ledger equals the telemetry, streams cut by the outage end
with an SSE error event, and the server recovers within 5 s (`/readyz` within 2 s)."""

import asyncio
import time

import httpx
import pytest
from django.db import connections

from telemetry.models import OperationTelemetry
from tests.chaos.harness import (
    Call,
    Verdict,
    fire,
    invariants,
    row_violations,
    run_load,
    statuses,
)

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS = [f"db-{n}" for n in range(3)]
STALL_AT = 2.5
STALL = 1.5  # then the cut finds queries in flight (finishes among them)
CUT = 1.5
LOAD_SECONDS = 9.5
CONCURRENCY = 10
WORDS = " ".join(f"w{i}" for i in range(10))  # a stream of ~1 s at 0.1 s a chunk


def _execute(session: str, prompt: str) -> dict:
    return {
        "session_id": session,
        "operation_type": "planning",
        "prompt": prompt,
        "enable_cache": False,
        "custom_preset": {"max_tokens": 40, "max_retries": 0},
        "budget_constraint": {
            "max_tokens_per_session": 10_000_000,
            "max_cost_per_session": "100.00",
            "enforce_hard_limits": True,
        },
    }


def _call(caller: int, n: int) -> Call:
    """Callers 0-4 execute, 5-6 chat, 7-9 stream."""
    session = SESSIONS[n % len(SESSIONS)]
    headers = {"X-Aura-Session-Id": session}
    if caller in (5, 6):
        messages = [{"role": "user", "content": f"Outline part {n}"}]
        chat = {"model": "sim-gpt", "max_tokens": 40, "messages": messages}
        return Call("chat", session, chat, headers)
    if caller >= 7:
        messages = [{"role": "user", "content": f"[[content:{WORDS}]]"}]
        chat = {"model": "sim-gpt", "max_tokens": 40, "stream": True, "messages": messages}
        return Call("stream", session, chat, headers)
    return Call("execute", session, _execute(session, f"Plan part {n} of the tides video"))


def test_database_outage_mid_load(
    chaos_server, pg_proxy, outage, api_key, chaos_provider, chaos_upstream
):
    chaos_upstream.latency = 0.05
    chaos_upstream.stream_chunk_delay = 0.1
    server = chaos_server(2)
    warm = [Call("execute", s, _execute(s, "warm up")) for s in SESSIONS]
    assert {o.status for o in asyncio.run(fire(server.url, api_key.raw_key, warm))} == {200}
    figures: dict = {}
    marks: dict[str, float] = {}

    async def ready_everywhere() -> bool:
        """/readyz 200 on four fresh connections at once (so on both workers, likely)."""

        async def one() -> bool:
            async with httpx.AsyncClient(base_url=server.url, timeout=2) as fresh:
                return (await fresh.get("/readyz")).status_code == 200

        answers = await asyncio.gather(*[one() for _ in range(4)], return_exceptions=True)
        return all(answer is True for answer in answers)

    async def probe(client: httpx.AsyncClient, t0: float) -> None:
        """After the restore: when /readyz, and then an execute, first answer 200."""
        payload = _execute(SESSIONS[0], "probe")
        while time.monotonic() - t0 < marks["restored"] + 10:
            now = time.monotonic() - t0
            if "readyz_s" not in figures and await ready_everywhere():
                figures["readyz_s"] = round(now - marks["restored"], 2)
            if "first_success_s" not in figures:
                try:
                    if (await client.post("/api/v1/operations/execute", json=payload)).is_success:
                        figures["first_success_s"] = round(now - marks["restored"], 2)
                except httpx.HTTPError:
                    pass
            if "readyz_s" in figures and "first_success_s" in figures:
                return
            await asyncio.sleep(0.1)

    async def cut_and_restore(t0: float) -> None:
        await asyncio.sleep(STALL_AT)
        pg_proxy.stall()
        marks["stalled"] = time.monotonic() - t0
        await asyncio.sleep(STALL)
        await asyncio.to_thread(outage.cut)
        marks["cut"] = time.monotonic() - t0
        figures["cut_at_wall"] = _wall()
        await asyncio.sleep(CUT)
        await asyncio.to_thread(outage.restore)
        marks["restored"] = time.monotonic() - t0
        figures["restored_at_wall"] = _wall()
        headers = {"Authorization": f"Bearer {api_key.raw_key}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=3) as client:
            await probe(client, t0)

    outcomes = asyncio.run(
        run_load(
            server.url,
            api_key.raw_key,
            make=_call,
            duration=LOAD_SECONDS,
            concurrency=CONCURRENCY,
            during=cut_and_restore,
        )
    )
    connections.close_all()  # after a real restart (opt-in), this thread's connection died
    stalled, cut, restored = marks["stalled"], marks["cut"], marks["restored"]
    figures.update(
        outage=f"stall {stalled:.1f}s cut {cut:.1f}s restore {restored:.1f}s",
        proxy_severed=getattr(outage, "severed", None),
        proxy_refused=getattr(outage, "refused", None),
    )
    verdict = Verdict("test_database_outage_mid_load", outcomes, figures=figures)
    counts = statuses(outcomes)

    # (a) 200, or 503 while the database is away (and up to 2 s after): nothing else.
    verdict.check(
        "a:statuses",
        [f"statuses other than 200/503: {dict(counts)}"] if set(counts) - {200, 503} else [],
    )
    late = [o for o in outcomes if o.status == 503 and not stalled <= o.ended <= restored + 2]
    verdict.check(
        "a:503_only_during_the_outage",
        [
            f"{len(late)} answers 503 outside [{stalled:.1f}, {restored + 2:.1f}]s: "
            f"{sorted(round(o.ended, 2) for o in late)[:10]}"
        ]
        if late
        else [],
    )
    # Streams answered 200 end with [DONE] or an error event, never silently.
    streams = [o for o in outcomes if o.call.kind == "stream" and o.status == 200]
    silent = [o for o in streams if o.stream_end == "cut"]
    figures["streams_200"] = len(streams)
    figures["streams_error_event"] = sum(1 for o in streams if o.stream_end == "error")
    verdict.check(
        "stream_ends_with_an_error_event",
        [
            f"{len(silent)} of {len(streams)} streams cut silently (no [DONE], no error event; "
            f"ended at {sorted(round(o.ended, 2) for o in silent)[:10]}s)"
        ]
        if silent
        else [],
    )
    # (f) recovery: the load is answered 200 again, and no failure comes, later than 5 s
    # after the restore (the probe's execute too, on a connection of its own).
    after = [o for o in outcomes if o.ended >= restored]
    last_failure = max((o.ended for o in after if o.status != 200 or o.error), default=restored)
    first_success = min((o.ended for o in after if o.status == 200), default=restored + 99)
    recovery = round(
        max(last_failure - restored, first_success - restored, figures.get("first_success_s", 99)),
        2,
    )
    figures.update(
        recovery_s=recovery,
        load_resumed_s=round(first_success - restored, 2),
        last_failure_s=round(last_failure - restored, 2),
    )
    verdict.check(
        "f:recovery<=5s",
        [f"recovered {recovery} s after the restore"] if recovery > 5 else [],
    )
    verdict.check(
        "f:readyz<=2s",
        []
        if figures.get("readyz_s", 99) <= 2
        else [f"/readyz 200 after {figures.get('readyz_s', '>10')} s"],
    )
    verdict.check(
        "f:execute_succeeds<=5s",
        []
        if figures.get("first_success_s", 99) <= 5
        else [f"first execute 200 after {figures.get('first_success_s', '>10')} s"],
    )
    # (d), (c), (e): rows of every answered operation, ledger = telemetry, nothing
    # reserved, once the journal is replayed (up to 10 s after the restore).
    figures["settled_in_s"] = verdict.settle_and_check(
        {
            "d:rows_of_every_200": lambda: row_violations(outcomes, statuses=[200]),
            "d:rows_of_every_other_answer": lambda: row_violations(
                [o for o in outcomes if o.status != 200]
            ),
            "503_is_not_a_success": lambda: _succeeded([o for o in outcomes if o.status == 503]),
            **invariants(server, caps="b:caps"),
        },
        timeout=10,
    )
    figures["journaled"] = server.log_tail_count("is journaled for replay")
    figures["client_errors"] = sum(1 for o in outcomes if o.error)
    figures["server_log"] = server.log_problems()
    verdict.report()


def _succeeded(failed: list) -> list[str]:
    """Operations the client was told failed, recorded as successes."""
    ids = [o.operation_id for o in failed if o.operation_id]
    wrong = OperationTelemetry.objects.filter(operation_id__in=ids, success=True).count()
    return (
        [f"{wrong} of {len(ids)} operations answered 503 are recorded as successes"]
        if wrong
        else []
    )


def _wall() -> str:
    """Now, as the server's log writes it (to line the log up with the outcomes)."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
