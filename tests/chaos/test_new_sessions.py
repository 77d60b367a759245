"""The first requests of new sessions, 50 at once on each of 5 sessions, through two
workers on PostgreSQL: every one is admitted (they race to create the session and set
its caps; none may be refused for it), and each session counts 50 operations and holds
50 telemetry rows. Without caps (two rounds: the race is brief, and on this 2-core machine
the code before the fix lost it 0-9 times in 250), with generous inline caps, and with a
named budget."""

import asyncio
from collections import Counter

import pytest

from budgets.models import BudgetConstraint, LlmSession
from telemetry.models import OperationTelemetry
from tests.chaos.harness import Call, Verdict, fire, invariants, row_violations, statuses

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS = 5
PER_SESSION = 50
VARIANTS = {
    "none": {},
    "none2": {},
    "inline": {
        "budget_constraint": {
            "max_tokens_per_session": 10_000_000,
            "max_cost_per_session": "100.00",
            "enforce_hard_limits": True,
        }
    },
    "named": {"budget": "generous"},
}


def _calls(variant: str) -> list[Call]:
    calls = []
    for s in range(SESSIONS):
        session = f"first-{variant}-{s}"
        for n in range(PER_SESSION):
            payload = {
                "session_id": session,
                "operation_type": "planning",
                "prompt": f"Plan part {n} of video {s}",
                "enable_cache": False,
                "custom_preset": {"max_tokens": 40, "max_retries": 0},
                **VARIANTS[variant],
            }
            calls.append(Call("execute", session, payload))
    return calls


def test_concurrent_first_requests_of_new_sessions(
    chaos_server, api_key, chaos_provider, chaos_upstream
):
    BudgetConstraint.objects.create(
        name="generous", max_tokens_per_session=10_000_000, enforce_hard_limits=True
    )
    chaos_upstream.latency = 0.05
    server = chaos_server(2)
    # Hot workers (memo filled, so the fast front serves): the bursts arrive at once.
    warm = {"session_id": "warm", "operation_type": "planning", "prompt": "hi"}
    warmed = asyncio.run(fire(server.url, api_key.raw_key, [Call("execute", "warm", warm)] * 8))
    assert {o.status for o in warmed} == {200}, statuses(warmed)
    all_outcomes = []
    per_variant: dict[str, list[str]] = {}
    figures: dict = {}
    for variant in VARIANTS:
        outcomes = asyncio.run(
            fire(server.url, api_key.raw_key, _calls(variant), client_timeout=60)
        )
        all_outcomes += outcomes
        counts = statuses(outcomes)
        figures[variant] = dict(counts)
        problems = []
        if set(counts) != {200}:
            refusals = Counter(o.error_code for o in outcomes if o.status != 200)
            problems.append(f"statuses {dict(counts)} ({dict(refusals)})")
        for session in LlmSession.objects.filter(session_id__startswith=f"first-{variant}-"):
            rows = OperationTelemetry.objects.filter(session_id=session.session_id).count()
            if (session.operation_count, rows) != (PER_SESSION, PER_SESSION):
                problems.append(
                    f"{session.session_id}: operation_count {session.operation_count}, "
                    f"{rows} rows (want {PER_SESSION} and {PER_SESSION})"
                )
        per_variant[variant] = problems

    verdict = Verdict(
        "test_concurrent_first_requests_of_new_sessions", all_outcomes, figures=figures
    )
    for variant, problems in per_variant.items():
        verdict.check(f"{variant}:all_admitted_and_counted", problems)
    verdict.settle_and_check(
        {
            "d:one_row_each": lambda: row_violations(all_outcomes),
            **invariants(server, caps="b:caps"),
        },
        timeout=5,
    )
    figures["server_log"] = server.log_problems()
    verdict.report()
