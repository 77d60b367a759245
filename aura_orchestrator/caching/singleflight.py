"""Identical requests in flight at once make one upstream call (per worker process).

The first caller of a key leads; the others await its outcome. Across worker processes
this does not hold: two workers may each make the call once, after which the stored
cache entry serves everyone.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, leader: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(result, led): `led` is False for callers that waited on another's call.
        A leader's exception reaches only the leader; followers then get `None`-free
        retries by calling `run` again (the caller decides)."""
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
