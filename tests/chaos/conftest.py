"""Chaos tests: a real `manage.py serve` on PostgreSQL, reached through a proxy that can
cut the database away; worker kills, dripping providers, NUL bytes, cancellations. The
harness itself is in harness.py.

PostgreSQL only: on SQLite this directory is not collected (rather than skipped), as in
tests/dashboard/test_overview_sums.py.
"""

import pytest
from django.conf import settings

from aura_orchestrator.simulator import FakeUpstream
from tests.chaos.harness import ChaosServer, PgProxy, RealPgRestart
from tests.conftest import sim_provider

if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def chaos_upstream():
    """A fake upstream of this test's own: its latency and faults leak into no other test."""
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def chaos_provider(transactional_db, chaos_upstream):
    """Provider `primary` (OpenAI-compatible, $1/$2 per million tokens) on that upstream."""
    return sim_provider(chaos_upstream, make_default=True)


@pytest.fixture
def pg_proxy():
    proxy = PgProxy().start()
    yield proxy
    proxy.stop()


@pytest.fixture
def outage(pg_proxy):
    """What `cut()` and `restore()` the database: the proxy, or (opt-in only, see
    RealPgRestart) a real restart of the local cluster."""
    if RealPgRestart.available():
        return RealPgRestart(pg_proxy)
    return pg_proxy


@pytest.fixture
def chaos_server(transactional_db, pg_proxy):
    """start(workers=2, **env): a server through the proxy, stopped after the test (before
    the database is flushed)."""
    servers: list[ChaosServer] = []

    def start(workers: int = 2, **env: str) -> ChaosServer:
        server = ChaosServer(pg_proxy, workers=workers, **env)
        servers.append(server)
        return server

    yield start
    pg_proxy.restore()
    for server in servers:
        server.stop()
