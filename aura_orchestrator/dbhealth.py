"""What "the database is unavailable" means, and how pooled connections recover from it.

After a database restart every idle pooled connection is dead, and psycopg finds out
only when one is used: each would fail one request, and psycopg_pool's own check backs
off a second per failure. Two cheap defences instead:

- `hung_up(conn)`: before a pooled connection is used, a zero-timeout poll of its socket.
  An idle connection has nothing to read unless the server closed it (EOF, or the
  "terminating connection" notice a restart sends), so readable means dead. One system
  call, no round trip.
- `purge_pools()`: on the first sign of trouble, every idle connection of both pools
  (Django's and the async store's) is checked and the dead ones replaced, at once.
"""

import asyncio
import logging
import select

import psycopg
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from psycopg_pool import PoolTimeout

from aura_orchestrator import errors

logger = logging.getLogger(__name__)

# Django's wrappers (the ORM path) and psycopg's own (the async store, its pool).
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    DjangoOperationalError,
    DjangoInterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)


def unavailable(exc: Exception) -> errors.ServiceUnavailable:
    """Our error for a database that cannot be reached: the client may retry shortly; the
    driver's message stays in the log, never in a body. Starts a purge of the pools."""
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    purge_pools()
    return errors.ServiceUnavailable("The database is unavailable; retry shortly.", retry_after=1)


def hung_up(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    """True if the server has closed this idle connection (or it is closed already)."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return bool(readable)


def purge_django_pool() -> None:
    """Replace the dead idle connections of Django's psycopg pool (sync; a thread)."""
    from django.db import connections

    for alias in connections:
        wrapper = connections[alias]
        pool = getattr(wrapper, "_connection_pools", {}).get(alias)
        if pool is None:
            continue
        try:
            pool.check()
        except Exception:
            logger.debug("checking the pool of %s failed", alias, exc_info=True)


_purging: asyncio.Task[None] | None = None


def purge_pools() -> None:
    """From the event loop: check both pools in the background, one purge at a time."""
    global _purging
    if _purging is not None and not _purging.done():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        purge_django_pool()
        return
    _purging = loop.create_task(_purge())


async def _purge() -> None:
    from aura_orchestrator.db import db
    from aura_orchestrator.store import get_store

    store = get_store()
    purge = getattr(store, "purge_pool", None)
    try:
        if purge is not None:
            await purge()
        await db(purge_django_pool)
    except Exception:
        logger.debug("purging pooled connections failed", exc_info=True)
