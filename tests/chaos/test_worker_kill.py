"""kill -9 of a worker under load: uvicorn's supervisor starts another, the caps hold, the
ledger equals the telemetry of the operations that completed, every answered operation
has its row, and the dead worker's reservations are handed back once they expire."""

import asyncio
import os
import signal
import time

import pytest
from django.utils import timezone

from budgets.models import BudgetReservation
from tests.chaos.harness import (
    Call,
    Ledgers,
    Verdict,
    fire,
    release_expired_in_thread,
    row_violations,
    run_load,
    settle,
    statuses,
)

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS = [f"kill-{n}" for n in range(4)]
# Hard token caps: an operation uses ~24 tokens and reserves ~52. The small caps fill up
# before the kill (refusals), the large ones only after it, whatever this machine's pace.
CAPS = {"kill-0": 300, "kill-1": 700, "kill-2": 1200, "kill-3": 1800}
MAX_TOKENS = 40
TTL = 10  # seconds a reservation lives (the dead worker's expire after this)
LOAD_SECONDS = 6.0
KILL_AT = 2.0
CONCURRENCY = 12


def _call(caller: int, n: int) -> Call:
    """Callers 0-7 execute, 8-9 chat, 10-11 stream; sessions in turn."""
    session = SESSIONS[n % len(SESSIONS)]
    prompt = f"Plan scene {n} of the tides video"
    if caller in (8, 9):
        return Call(
            "chat",
            session,
            {"model": "sim-gpt", "max_tokens": MAX_TOKENS, "messages": [_user(prompt)]},
            {"X-Aura-Session-Id": session},
        )
    if caller >= 10:
        chat = {"model": "sim-gpt", "max_tokens": MAX_TOKENS, "stream": True}
        return Call(
            "stream", session, {**chat, "messages": [_user(prompt)]}, {"X-Aura-Session-Id": session}
        )
    return Call("execute", session, _execute(session, prompt))


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _execute(session: str, prompt: str) -> dict:
    return {
        "session_id": session,
        "operation_type": "planning",
        "prompt": prompt,
        "enable_cache": False,
        "custom_preset": {"max_tokens": MAX_TOKENS, "max_retries": 0, "timeout_seconds": 5},
        "budget_constraint": {"max_tokens_per_session": CAPS[session], "enforce_hard_limits": True},
    }


def test_kill_a_worker_mid_load(chaos_server, api_key, chaos_provider, chaos_upstream):
    chaos_upstream.latency = 0.15  # operations overlap the kill
    server = chaos_server(
        2, BUDGET_RESERVATION_TTL_SECONDS=str(TTL), BUDGET_RESERVATION_MARGIN_SECONDS="2"
    )
    # Each session gets its caps from an execute before the load (gateway calls carry none).
    warm = [Call("execute", s, _execute(s, "warm up")) for s in SESSIONS]
    assert {o.status for o in asyncio.run(fire(server.url, api_key.raw_key, warm))} == {200}
    workers = server.worker_pids()
    assert len(workers) == 2, workers
    figures: dict = {}

    async def kill_one(t0: float) -> None:
        await asyncio.sleep(KILL_AT)
        victim = server.busiest_worker()  # so that calls are in flight on it
        figures["killed_pid"] = victim
        os.kill(victim, signal.SIGKILL)
        figures["killed_at"] = round(time.monotonic() - t0, 2)
        respawn = await asyncio.to_thread(server.wait_for_workers, exclude=[victim], timeout=30)
        figures["worker_respawn_s"] = round(respawn, 2)  # uvicorn's supervisor started one

    outcomes = asyncio.run(
        run_load(
            server.url,
            api_key.raw_key,
            make=_call,
            duration=LOAD_SECONDS,
            concurrency=CONCURRENCY,
            during=kill_one,
        )
    )
    verdict = Verdict("test_kill_a_worker_mid_load", outcomes, figures=figures)
    counts = statuses(outcomes)

    # (a) only 200 and 402; client errors only for calls in flight at the kill.
    verdict.check(
        "a:statuses",
        [f"unexpected statuses {dict(counts)}"]
        if {k for k in counts if not str(k).startswith("exc:")} - {200, 402}
        else [],
    )
    killed_at = figures["killed_at"]
    stray = [o for o in outcomes if o.error and not killed_at - 0.1 <= o.ended <= killed_at + 3]
    verdict.check(
        "a:client_errors_outside_the_kill",
        [
            f"{len(stray)} client errors away from the kill: "
            f"{[(o.error, round(o.ended, 2)) for o in stray[:5]]}"
        ]
        if stray
        else [],
    )
    verdict.check("a:some_refusals", [] if counts.get(402) else ["no 402: caps too loose"])
    # (d) every answered operation (200 or 402) has exactly one row. A stream whose
    # headers went out but whose body the kill cut was never answered: the dead worker
    # charged nothing for it (its reservation expires, below; c: ledger = Σ telemetry).
    cut_by_kill = [
        o for o in outcomes if o.stream_end == "cut" and killed_at - 0.1 <= o.ended <= killed_at + 3
    ]
    figures["streams_cut_by_kill"] = len(cut_by_kill)
    answered = [o for o in outcomes if o not in cut_by_kill]
    verdict.check("d:rows", settle(lambda: row_violations(answered), timeout=5))

    # (e) the dead worker's reservations expire: the job with the real clock after that.
    pending = list(BudgetReservation.objects.values_list("expires_at", flat=True))
    figures["reservations_left_by_kill"] = len(pending)
    if pending:
        wait = (max(pending) - timezone.now()).total_seconds() + 0.5
        time.sleep(max(0.0, min(wait, TTL + 1)))
    figures["released_by_job"] = release_expired_in_thread()
    ledgers = Ledgers.read()
    verdict.check("b:caps", ledgers.caps_violations())
    verdict.check("c:ledger=telemetry", ledgers.ledger_violations())
    verdict.check("e:nothing_reserved", ledgers.reserved_violations())
    verdict.check("journal_replayed", server.journal_violations())
    figures["client_errors"] = sum(1 for o in outcomes if o.error)
    survivors = server.worker_pids()
    verdict.check(
        "supervisor_restarts_the_worker",
        []
        if len(survivors) == 2 and figures["killed_pid"] not in survivors
        else [f"workers at the end: {survivors} (killed {figures['killed_pid']})"],
    )
    figures["server_log"] = server.log_problems()
    verdict.report()
