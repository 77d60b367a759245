"""A lock held until the caller's transaction ends, for the apps' ORM services.

On PostgreSQL a transaction-scoped advisory lock; SQLite's IMMEDIATE transactions
serialise writers already, so there is nothing to take.
"""

from django.db import connection

from aura_orchestrator.store.pg_sql import XACT_LOCK_BY_NAME_SQL, XACT_LOCK_SQL


def transaction_lock(*, key: int | str) -> None:
    """Wait for, then hold until the transaction ends, the lock `key` (a number, or a
    name such as an operation id). Call it inside `transaction.atomic()`."""
    if connection.vendor != "postgresql":
        return
    sql = XACT_LOCK_BY_NAME_SQL if isinstance(key, str) else XACT_LOCK_SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, [key])
