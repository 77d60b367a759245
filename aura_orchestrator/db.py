"""Run a synchronous unit of ORM work from async code.

Each unit runs in the executor's thread pool (not the single thread-sensitive thread,
which would serialise every request of a worker) and gives its connection back when it
ends: to the psycopg pool in production, closed otherwise, so no thread keeps one.
"""

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")


def _closing(fn: Callable[P, T]) -> Callable[P, T]:
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return run


async def db(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    return await sync_to_async(_closing(fn), thread_sensitive=False)(*args, **kwargs)
