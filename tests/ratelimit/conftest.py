"""Both stores of the windows answer the same tests: Redis (on the Redis the suite runs
with, REDIS_URL) and the database (what runs without Redis)."""

import os
import uuid

import pytest
import redis.asyncio as aioredis

from aura_orchestrator.ratelimit.db_store import DbWindows
from aura_orchestrator.ratelimit.redis_store import RedisWindows

STORES = ["redis", "database"] if os.environ.get("REDIS_URL") else ["database"]


@pytest.fixture(params=STORES)
def make_windows(request):
    """A factory of windows of the parametrized store (`window_seconds`: shorter ones
    for tests that wait for a window to pass)."""
    if request.param == "database":
        return lambda window_seconds=60: DbWindows(window_seconds=window_seconds)
    # Blocking: 200 calls at once wait for one of 20 connections, as a worker's would.
    # (Its connections open on the test's loop at first use, and close with it.)
    pool = aioredis.BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"], max_connections=20, timeout=10
    )
    client = aioredis.Redis(connection_pool=pool)
    return lambda window_seconds=60: RedisWindows(client, window_seconds=window_seconds)


@pytest.fixture
def window_key():
    """A window of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"
