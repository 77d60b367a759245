"""Identical requests in flight at once make one upstream call (per worker process).

The first caller of a key leads; the others await its outcome. Across worker processes
this does not hold: two workers may each make the call once, after which the stored
cache entry serves everyone.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, leader: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(result, led): `led` is False for callers that waited on another's call and
        got its result (the caller decides what to do with a failed one). A leader's
        exception reaches its followers too."""
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing), False
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await leader()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers may be none
            raise
        else:
            future.set_result(result)
            return result, True
        finally:
            self._inflight.pop(key, None)


class CacheLease:
    """A short exclusive lease in Django's cache, for single-flight across processes.

    Only meaningful on a shared cache (Redis): `add` is atomic there, so one worker of
    all machines leads and the others wait for its cache entry. On the local-memory cache
    every process has its own, and the in-process `SingleFlight` already covers it.
    """

    def __init__(self, key: str, *, ttl_seconds: float) -> None:
        from django.core.cache import cache

        self._cache = cache
        self.key = f"aura:lease:{key}"
        self.ttl = max(1, int(ttl_seconds))
        self._token = uuid.uuid4().hex

    @staticmethod
    def shared() -> bool:
        from django.core.cache import cache
        from django.core.cache.backends.locmem import LocMemCache

        return not isinstance(cache, LocMemCache)

    async def acquire(self) -> bool:
        return await self._cache.aadd(self.key, self._token, self.ttl)

    async def held_by_other(self) -> bool:
        return await self._cache.aget(self.key) not in (None, self._token)

    async def release(self) -> None:
        # Compare then delete: a lease that expired and was taken over is not ours to drop.
        if await self._cache.aget(self.key) == self._token:
            await self._cache.adelete(self.key)
