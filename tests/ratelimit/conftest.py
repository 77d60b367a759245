"""The Redis windows are tested on the Redis the suite runs with (REDIS_URL); on the
embedded default (no Redis) this directory is not collected, as the chaos tests are not
on SQLite."""

import os
import uuid

import pytest
import redis.asyncio as aioredis

if not os.environ.get("REDIS_URL"):
    collect_ignore_glob = ["test_redis_*.py"]


@pytest.fixture
async def redis_client():
    # Blocking: 200 calls at once wait for one of 20 connections, as a worker's would.
    pool = aioredis.BlockingConnectionPool.from_url(
        os.environ["REDIS_URL"], max_connections=20, timeout=10
    )
    client = aioredis.Redis(connection_pool=pool)
    yield client
    await client.aclose()


@pytest.fixture
def window_key():
    """A window of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"
