"""kill -9 of a worker holding spend budgets: once its holds expire, the expiry job hands
them back on every level (project, key, session), and every ledger equals the telemetry
of the operations that completed."""

import asyncio
import os
import signal
import subprocess
import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from aura_orchestrator.simulator import Fault
from budgets.models import SpendHold
from budgets.services import budget_release_expired
from tests.budgets.test_spend_exact import (
    MAX_TOKENS,
    PROMPT,
    _budget,
    _nothing_reserved,
    _payload,
    _telemetry_tokens,
    _used,
    _worst,
)
from tests.pipeline.helpers import EXECUTE, prompt_tokens

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_killed_workers_holds_are_handed_back_on_every_level(
    live_server_factory, project, api_key, chaos_provider, chaos_upstream
):
    ttl = 8
    server = live_server_factory(
        2,
        BUDGET_RESERVATION_TTL_SECONDS=str(ttl),
        BUDGET_RESERVATION_MARGIN_SECONDS="1",
        AURA_SPEND_TEST="kill",  # a server of its own: its worker dies
    )
    project_budget = _budget(project, period="month", max_tokens=10**6)
    key_budget = _budget(project, scope="api_key", api_key=api_key.api_key, max_tokens=10**6)
    chaos_upstream.enqueue(*[Fault(delay=4.0, usage=(prompt_tokens(PROMPT), MAX_TOKENS))] * 12)

    async def load() -> list:
        headers = {"Authorization": f"Bearer {api_key.raw_key}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
            calls = asyncio.gather(
                *[client.post(EXECUTE, json=_payload(f"k-{n}")) for n in range(12)],
                return_exceptions=True,  # the dead worker's calls fail; the others finish
            )
            await asyncio.to_thread(
                _kill_a_worker_once_holding, server.process.pid, chaos_upstream.port
            )
            return await calls

    outcomes = async_to_sync(load)()
    answered = [o for o in outcomes if isinstance(o, httpx.Response)]
    assert all(o.status_code == 200 for o in answered)
    assert len(answered) < 12  # some calls died with their worker
    held = SpendHold.objects.count()
    assert held == 12 - len(answered)  # theirs, never handed back by a finish
    time.sleep(ttl + 1.5)
    assert budget_release_expired() == 2 * held  # each: the session's and the spend hold
    _nothing_reserved()
    spent = _telemetry_tokens()
    assert spent == len(answered) * _worst()
    assert _used(project_budget) == spent == _used(key_budget)


def _kill_a_worker_once_holding(server_pid: int, upstream_port: int) -> None:
    """Once operations hold their budgets (the upstream answers in 4 s), kill -9 a worker
    with calls at the upstream (`ss` tells which process holds those connections)."""
    deadline = time.monotonic() + 10
    while SpendHold.objects.count() < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    children = subprocess.run(
        ["pgrep", "-P", str(server_pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    sockets = subprocess.run(
        ["ss", "-tnpH", "state", "established", "dst", f"127.0.0.1:{upstream_port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    busy = [int(p) for p in children if f"pid={p}," in sockets and _is_worker(int(p))]
    assert busy, sockets
    os.kill(busy[0], signal.SIGKILL)


def _is_worker(pid: int) -> bool:
    """uvicorn's worker processes (not its resource tracker)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"multiprocessing.resource_tracker" not in handle.read()
    except OSError:
        return False
