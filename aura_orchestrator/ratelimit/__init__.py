"""Rate limits (issue 16): sliding windows per limit (window.py), kept in Redis when
`REDIS_URL` is set (redis_store.py: every worker of every machine shares them) and in
the database otherwise (db_store.py). `windows()` is this process's store of them."""

import asyncio
import uuid
from collections.abc import Sequence
from typing import Protocol

from django.conf import settings

from aura_orchestrator.ratelimit.window import Check, Decision


class Windows(Protocol):
    async def admit(
        self, checks: Sequence[Check], *, call_id: uuid.UUID, in_flight_seconds: float
    ) -> Decision: ...

    async def end(
        self, checks: Sequence[Check], *, call_id: uuid.UUID, tokens_used: int | None
    ) -> None: ...


_by_loop: dict[asyncio.AbstractEventLoop, Windows] = {}


def windows() -> Windows:
    """The windows' store for this event loop (a Redis client belongs to its loop)."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        if settings.REDIS_URL:
            import redis.asyncio as aioredis

            from aura_orchestrator.ratelimit.redis_store import RedisWindows

            # Bounded and blocking: calls in flight wait for a connection, never open
            # hundreds (a burst must not exhaust Redis's clients).
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL, max_connections=32, timeout=5
            )
            found = RedisWindows(aioredis.Redis(connection_pool=pool))
        else:
            from aura_orchestrator.ratelimit.db_store import DbWindows

            found = DbWindows()
        for old in [lp for lp in _by_loop if lp.is_closed()]:
            del _by_loop[old]
        _by_loop[loop] = found
    return found
