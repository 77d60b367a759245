"""Run a synchronous unit of ORM work from async code.

Each unit runs in a thread pool of its own (not the single thread-sensitive thread,
which would serialise every request of a worker) and gives its connection back when it
ends: to the psycopg pool in production, closed otherwise, so no thread keeps one.

The pool has AURA["DB_THREADS"] threads (env AURA_DB_THREADS, default 4; keep it at most
the DB_POOL's max_size, the connections a worker may hold). Each unit is a few short
statements, so a few threads keep up with hundreds of in-flight operations, and more
threads only contend for the GIL: measured side by side under 50 concurrent requests
(bench/README.md), 4 threads cost about 15 % less CPU per request than 16. Units are
submitted with `loop.run_in_executor` and a copy of the context, which is what
`sync_to_async(thread_sensitive=False)` does, minus its per-call bookkeeping.
"""

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.AURA["DB_THREADS"], thread_name_prefix="aura-db"
                )
    return _executor


def _closing(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def db(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    context = contextvars.copy_context()
    call = functools.partial(context.run, _closing, fn, args, kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(), call)
