"""The pipeline's database work behind one async interface, in three round trips.

    prepare  the session's ledger (created on first use) and the cache lookup
    reserve  the worst case on the ledger (one conditional statement)
    finish   settle or release, store the answer, write telemetry, read the ledger:
             one transaction, one durable commit

Two implementations with the same semantics:

- `PgStore` (PostgreSQL, the production database): async psycopg on the event loop,
  each step ONE multi-statement query (simple protocol, client-side binding) that the
  server runs as one transaction; its SQL text is all in `pg_sql.py`. No thread hop, no
  ORM.
- `OrmStore` (SQLite, or `AURA_ASYNC_STORE=0`): the apps' services, pure ORM, each step
  one unit in `db()`'s threads.

No transaction is ever open while a provider is called: each step commits before it
returns.
"""

from functools import cache

from django.conf import settings
from django.db import connection

from aura_orchestrator.store.base import CacheWrite, Finish, Store


@cache
def _store_for(vendor: str, use_async: bool) -> Store:
    if vendor == "postgresql" and use_async:
        from aura_orchestrator.store.pg import PgStore

        return PgStore()
    from aura_orchestrator.store.orm import OrmStore

    return OrmStore()


def get_store() -> Store:
    return _store_for(connection.vendor, settings.AURA["ASYNC_STORE"])


__all__ = ["CacheWrite", "Finish", "Store", "get_store"]
