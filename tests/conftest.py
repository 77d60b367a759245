"""Shared fixtures: factories, the fake upstream server, API clients, a real ASGI server.

Tests that go through the pipeline from async code use `transaction=True`: the ORM work
runs in other threads, which do not see an uncommitted test transaction.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.db import connection, connections

from aura_orchestrator.caching import config_cache
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.crypto import configured_keys
from aura_orchestrator.simulator import FakeUpstream
from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create

ROOT = Path(__file__).resolve().parent.parent

# Prices that make cost arithmetic easy to check by hand: $1 and $2 per million tokens,
# so 1 input token = 1 micro-dollar and 1 output token = 2 micro-dollars.
INPUT_PRICE = Decimal("1")
OUTPUT_PRICE = Decimal("2")


@pytest.fixture(autouse=True)
def _close_thread_connections():
    """Async transactional tests leave connections open in worker threads otherwise."""
    yield
    connections.close_all()


@pytest.fixture(autouse=True)
def _fresh_config_memo():
    """Each test's database starts over (rolled back or flushed, which sends no signal):
    memoized keys, presets and routes of an earlier test must not leak into it."""
    config_cache.clear()
    yield
    config_cache.clear()


@pytest.fixture(scope="session")
def upstream():
    """One fake OpenAI/Anthropic server on 127.0.0.1 for the whole run."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(upstream):
    """The shared fake upstream, with its script and counters reset for this test."""
    upstream.reset()
    yield upstream
    upstream.reset()


@pytest.fixture
def project(db):
    return project_get_or_create(name="studio")


@pytest.fixture
def api_key(project):
    """A CreatedKey: `.raw_key` is the secret, `.api_key` the row."""
    return api_key_create(name="test-service", project=project)


@pytest.fixture
def other_api_key(db):
    return api_key_create(name="other-service", project=project_get_or_create(name="other"))


def sim_provider(
    upstream: FakeUpstream,
    *,
    name: str = "primary",
    key_env: str = "TEST_PRIMARY_API_KEY",
    make_default: bool = False,
):
    """An OpenAI-compatible provider `name` on `upstream`, model sim-gpt, at the tests'
    easy prices."""
    return provider_configure(
        name=name,
        kind="openai",
        base_url=upstream.openai_base_url,
        api_key_env=key_env,
        model="sim-gpt",
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
        make_default=make_default,
    )


@pytest.fixture
def provider(db, fake_upstream):
    """Provider `primary` (OpenAI-compatible) on the fake upstream, model sim-gpt."""
    return sim_provider(fake_upstream, make_default=True)


@pytest.fixture(autouse=True)
def _provider_secret(monkeypatch):
    monkeypatch.setenv("TEST_PRIMARY_API_KEY", "sk-test-primary-secret")
    monkeypatch.setenv("TEST_BACKUP_API_KEY", "sk-test-backup-secret")


@pytest.fixture
def backup_provider(db, fake_upstream):
    """A second upstream server (its own faults) as provider `backup`."""
    server = FakeUpstream().start()
    configured = sim_provider(server, name="backup", key_env="TEST_BACKUP_API_KEY")
    configured.provider.priority = 200
    configured.provider.save()
    yield server
    server.stop()


@pytest.fixture
def api_client(api_key):
    """DRF's test client, authenticated with the test key."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw_key}")
    return client


@asynccontextmanager
async def _in_process(app, api_key):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {api_key.raw_key}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture
async def asgi_client(api_key):
    """httpx against the real ASGI application in-process, authenticated."""
    from aura_orchestrator.asgi import application

    async with _in_process(application, api_key) as client:
        yield client


@pytest.fixture
async def django_client(api_key):
    """The same, through Django's application alone (as with AURA_FAST_PATH=0)."""
    from aura_orchestrator.asgi import django_application

    async with _in_process(django_application, api_key) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


class LiveServer:
    def __init__(self, *, workers: int, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "var" / f"live-server-{self.port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "DEBUG": "false",
            "DJANGO_SECRET_KEY": "live-server-test-key",
            "LOG_LEVEL": "WARNING",
            # Servers outlive a test's data and share no cache with the test process: no
            # per-process memo of keys, presets and routes (caching/config_cache.py).
            "AURA_CONFIG_CACHE_SECONDS": "0",
            # Servers of the session stay up to its end; PostgreSQL here allows 100
            # connections in all: each pool opens one until load asks for more.
            "AURA_DB_POOL_MIN": "1",
            # Its own journal of unwritten finishes: never another run's (store/journal.py).
            "AURA_JOURNAL_DIR": tempfile.mkdtemp(prefix="aura-live-journal-"),
            # The test process's keys: a secret it stored is one the server can decrypt.
            "AURA_ENCRYPTION_KEYS": ",".join(k.decode() for k in configured_keys()),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: an unread pipe fills up and blocks the server's logging.
            stderr=self.log_path.open("wb"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start in 30 s")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def live_server_factory(django_db_setup, django_db_blocker):
    servers: dict[tuple, LiveServer] = {}

    def get(workers: int = 1, **env: str) -> LiveServer:
        """A running server with `workers` processes and extra environment `env`."""
        key = (workers, tuple(sorted(env.items())))
        if key not in servers:
            servers[key] = LiveServer(workers=workers, env=env)
        return servers[key]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
def live_server_url(live_server_factory, transactional_db):
    """A real `manage.py serve` (uvicorn) on loopback, one worker, same test database."""
    return live_server_factory(1).url
