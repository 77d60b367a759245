"""After a database restart every idle pooled connection is dead. The async store must
notice before using one (no failed request per stale connection, which kept /execute
answering 503 for ~15 s after PostgreSQL was back)."""

import asyncio

import psycopg
import pytest
from django.db import connection

from aura_orchestrator.dbhealth import hung_up

pytestmark = [pytest.mark.django_db(transaction=True)]

if connection.vendor == "postgresql":

    async def _terminate_others(conninfo: str) -> int:
        """What a restart does to our pool: the server ends every other backend."""
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name = 'aura-pool-test'"
            )
            (count,) = await cursor.fetchone()
        return count

    @pytest.mark.asyncio
    async def test_dead_pooled_connections_are_replaced_before_a_step_uses_them(settings):
        from aura_orchestrator.store.pg import PgStore, _conninfo

        settings.AURA = {
            **settings.AURA,
            "ASYNC_POOL": True,
            "DB_POOL": {"min_size": 4, "max_size": 4, "timeout": 5},
        }
        store = PgStore()
        store._conninfo = _conninfo() + " application_name=aura-pool-test"
        try:
            # Fill the pool: four steps at once hold four connections.
            await asyncio.gather(
                *(store.cache_lookup(project_id=1, key_hash=f"k{i}") for i in range(4))
            )
            assert store._pool.get_stats()["pool_size"] == 4
            assert await _terminate_others(_conninfo()) == 4
            await asyncio.sleep(0.2)  # the server's goodbye reaches the sockets
            # Every step right after the "restart" succeeds: none meets a dead connection.
            for i in range(8):
                assert await store.cache_lookup(project_id=1, key_hash=f"after{i}") is None
            stats = store._pool.get_stats()
            assert stats.get("connections_lost", 0) + stats.get("returns_bad", 0) >= 1
        finally:
            if store._pool is not None:
                await store._pool.close()

    @pytest.mark.asyncio
    async def test_hung_up_tells_a_live_connection_from_a_closed_one():
        from aura_orchestrator.store.pg import _conninfo

        async with await psycopg.AsyncConnection.connect(
            _conninfo() + " application_name=aura-pool-test", autocommit=True
        ) as conn:
            await conn.execute("SELECT 1")
            assert not hung_up(conn)
            await _terminate_others(_conninfo())
            await asyncio.sleep(0.2)
            assert hung_up(conn)
