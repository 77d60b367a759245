"""Every SQL text of the store, for PostgreSQL (`PgStore`, `locks.transaction_lock`).

The apps' services (budgets, caching, telemetry) are the same writes on the ORM; this
module is their one-round-trip form. Table and column names come from the models, and
the caps' conditions from `budgets/caps.py`, so neither is written twice.
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.utils import timezone
from psycopg.types.json import Jsonb

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.caching.services import Answer, CachedAnswer
from budgets.caps import Counts, admits_sql
from budgets.models import BudgetConstraint, BudgetReservation, LlmSession, SpendHold, SpendShard
from budgets.reserving import Hold, Reservation
from budgets.services import Caps, caps_columns
from budgets.spending import SpendHoldRef
from telemetry.models import OperationTelemetry

_SESSION = LlmSession._meta.db_table
_RESERVATION = BudgetReservation._meta.db_table
_CONSTRAINT = BudgetConstraint._meta.db_table
_CACHE = CacheEntry._meta.db_table

# A transaction whose commit does not wait for the WAL flush (prepare, reserve).
NO_FLUSH_SQL = "SET LOCAL synchronous_commit TO OFF"
# A lock held until the transaction ends (store/locks.py), by number or by name.
XACT_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s)"
XACT_LOCK_BY_NAME_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

Row = tuple[Any, ...]  # a result row, as psycopg returns it
Params = dict[str, Any]  # a statement's named parameters
Statement = tuple[str, Params]

# --- the ledger ----------------------------------------------------------------------------

# The ledger as the reservation or settlement leaves it (RETURNING of the UPDATE), so
# that answering with the session's budget needs no SELECT of its own.
# In the model's field order, so that a row builds an instance positionally (fast path).
LEDGER_COLUMNS = tuple(f.column for f in LlmSession._meta.concrete_fields)
LEDGER_RETURNING = (
    ", ".join(f"{_SESSION}.{c}" for c in LEDGER_COLUMNS)
    + f", (SELECT name FROM {_CONSTRAINT} WHERE {_CONSTRAINT}.id = {_SESSION}.constraint_id)"
)
LEDGER_SELECT_SQL = f"SELECT {LEDGER_RETURNING} FROM {_SESSION} WHERE id = %(session)s"
LEDGER_BY_NAME_SQL = (
    f"SELECT {LEDGER_RETURNING} FROM {_SESSION}"
    " WHERE project_id = %(project)s AND session_id = %(session_id)s"
)


def ledger_from_row(row: Row) -> LlmSession:
    """An unsaved LlmSession from a LEDGER_RETURNING row (its constraint's name loaded, so
    `budget_status` needs no query)."""
    session = LlmSession(*row[:-1])  # type: ignore[misc]  # the plugin reads *row as the pk
    session._state.adding = False
    if session.constraint_id is not None:
        session.constraint = BudgetConstraint(id=session.constraint_id, name=row[-1] or "")
    return session


# The session columns a request's caps set (`budgets.services.caps_columns`).
SESSION_CAPS_COLUMNS = tuple(caps_columns(Caps()))
SESSION_INSERT_SQL = f"""
INSERT INTO {_SESSION} (project_id, session_id, {", ".join(SESSION_CAPS_COLUMNS)}, tokens_used,
                        cost_accrued_micros, tokens_reserved, cost_reserved_micros,
                        operation_count, created_at, last_activity_at)
VALUES (%(project)s, %(session_id)s, {", ".join(f"%({c})s" for c in SESSION_CAPS_COLUMNS)},
        0, 0, 0, 0, 0, %(now)s, %(now)s)
ON CONFLICT (project_id, session_id) DO NOTHING
RETURNING {LEDGER_RETURNING}
"""
SESSION_RECAP_SQL = f"""
UPDATE {_SESSION} SET {", ".join(f"{c} = %({c})s" for c in SESSION_CAPS_COLUMNS)}
 WHERE id = %(session)s
RETURNING {LEDGER_RETURNING}
"""

# --- reserve ---------------------------------------------------------------------------------

# One statement: the conditional ledger update (WHERE: which row, and the caps that must
# hold on it, evaluated on the locked row) feeding the reservation insert; the ledger as
# it leaves comes back. `%(tokens)s` and `%(cost)s` are the operation's worst case.
_RESERVE_TEMPLATE = f"""
WITH admitted AS (
    UPDATE {_SESSION}
       SET tokens_reserved = tokens_reserved + %(tokens)s,
           cost_reserved_micros = cost_reserved_micros + %(cost)s,
           last_activity_at = %(now)s
     WHERE {{where}}
 RETURNING {LEDGER_RETURNING}
), held AS (
    INSERT INTO {_RESERVATION} (id, session_id, operation_id, tokens, cost_micros, created_at,
                                expires_at)
    SELECT %(id)s, id, %(operation)s, %(tokens)s, %(cost)s, %(now)s, %(expires)s FROM admitted
)
SELECT * FROM admitted
"""
_BY_PK = "id = %(session)s"
_RESERVE_SQL = {
    True: _RESERVE_TEMPLATE.format(where=f"{_BY_PK} AND {admits_sql(Counts.LEDGER)}"),
    False: _RESERVE_TEMPLATE.format(where=_BY_PK),
}
# The same reservation by (project, session_id), for a request that brings no caps: the
# session's caps are read on the locked row, per-operation ones included, so the pipeline
# needs no read of the ledger before it (one round trip less). No row: a new session, or
# refused; the caller reads the ledger to tell which, and why.
RESERVE_BY_NAME_SQL = _RESERVE_TEMPLATE.format(
    where="project_id = %(project)s AND session_id = %(session_id)s"
    f" AND (NOT enforce_hard_limits OR ({admits_sql(Counts.OPERATION)}"
    f" AND {admits_sql(Counts.LEDGER)}))"
)


def reserve_sql(*, enforce_hard_limits: bool) -> str:
    """The one-statement reservation by session pk; returns the ledger row, none if
    refused."""
    return _RESERVE_SQL[enforce_hard_limits]


def reserve_params(hold: Hold, **where: object) -> Params:
    """Parameters of the reservation `hold` on the session `where` names: `session` (its
    pk, `reserve_sql`) or `project` and `session_id` (RESERVE_BY_NAME_SQL)."""
    return {
        **where,
        "id": hold.id,
        "operation": hold.operation_id,
        "tokens": hold.tokens,
        "cost": hold.cost_micros,
        "now": hold.created_at,
        "expires": hold.expires_at,
    }


# --- settle and release ----------------------------------------------------------------------

# The reserved amounts come from the deleted row, so only the deleter hands them back.
# Data-modifying CTEs (run once, whether read or not) and a last statement of the
# caller's: by default whether this statement released the reservation; the finish
# writes the operation's telemetry row there instead (its budget_overrun read from
# `released`: nothing released means the expiry job had handed it back already).
HAND_BACK_SQL = f"""
WITH released AS (
    DELETE FROM {_RESERVATION} WHERE id = %(id)s RETURNING tokens, cost_micros
), handed_back AS (
    UPDATE {_SESSION}
       SET tokens_reserved = tokens_reserved - COALESCE((SELECT tokens FROM released), 0),
           cost_reserved_micros = cost_reserved_micros
                                  - COALESCE((SELECT cost_micros FROM released), 0){{charge}}
     WHERE id = %(session)s{{only_if_released}}
)
{{then}}
"""
RELEASED_SQL = "SELECT EXISTS (SELECT 1 FROM released)"
NOT_RELEASED_SQL = "NOT EXISTS (SELECT 1 FROM released)"
CHARGE_SQL = (
    ",\n       tokens_used = tokens_used + %(tokens)s,"
    "\n       cost_accrued_micros = cost_accrued_micros + %(cost)s,"
    "\n       operation_count = operation_count + %(operations)s,"
    "\n       last_activity_at = %(now)s"
)


def hand_back_statement(
    reservation: Reservation,
    *,
    charge: tuple[int, int] | None,
    operations: int = 1,
    then: str = RELEASED_SQL,
) -> Statement:
    """The one-statement settle (`charge`: tokens, micro-dollars) or release (None),
    ending with `then` (which may read `released`)."""
    sql = HAND_BACK_SQL.format(
        charge="" if charge is None else CHARGE_SQL,
        only_if_released=" AND EXISTS (SELECT 1 FROM released)" if charge is None else "",
        then=then,
    )
    params = {"id": reservation.id, "session": reservation.session_pk}
    if charge is not None:
        tokens, cost = charge
        params |= {"tokens": tokens, "cost": cost, "operations": operations}
        params["now"] = timezone.now()
    return sql, params


# --- the cache -------------------------------------------------------------------------------

_ANSWER_COLUMNS = "content, provider_name, model_name, tokens_in, tokens_out, payload"
# The lookup counts its hit in the same statement (as `caching.services.cache_lookup`).
LOOKUP_AND_COUNT_SQL = f"""
UPDATE {_CACHE} SET hit_count = hit_count + 1, last_hit_at = %(now)s
 WHERE project_id = %(project)s AND key_hash = %(key)s AND expires_at > %(now)s
RETURNING {_ANSWER_COLUMNS}
"""
# `caching.services.cache_store`'s update_or_create, as one upsert.
STORE_SQL = f"""
INSERT INTO {_CACHE} (project_id, key_hash, operation_type, {_ANSWER_COLUMNS}, created_at,
                      expires_at, hit_count, last_hit_at)
VALUES (%(project)s, %(key)s, %(operation_type)s, %(content)s, %(provider_name)s,
        %(model_name)s, %(tokens_in)s, %(tokens_out)s, %(payload)s, %(now)s, %(expires)s, 0,
        NULL)
ON CONFLICT (project_id, key_hash) DO UPDATE SET
    operation_type = EXCLUDED.operation_type, content = EXCLUDED.content,
    provider_name = EXCLUDED.provider_name, model_name = EXCLUDED.model_name,
    tokens_in = EXCLUDED.tokens_in, tokens_out = EXCLUDED.tokens_out,
    payload = EXCLUDED.payload, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
    hit_count = 0, last_hit_at = NULL
"""


def answer_from_row(row: tuple[Any, ...]) -> CachedAnswer:
    """A row of `_ANSWER_COLUMNS` as the cached answer."""
    content, provider_name, model_name, tokens_in, tokens_out, payload = row
    return CachedAnswer(
        content=content,
        provider_name=provider_name,
        model_name=model_name,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        answer=Answer.of_payload(payload),
    )


def store_params(
    *, project_id: int, key_hash: str, operation_type: str, answer: CachedAnswer, ttl_seconds: int
) -> Params:
    now = timezone.now()
    return {
        "project": project_id,
        "key": key_hash,
        "operation_type": operation_type,
        "content": answer.content,
        "provider_name": answer.provider_name,
        "model_name": answer.model_name,
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
        "payload": Jsonb(answer.answer.payload()) if answer.answer else None,
        "now": now,
        "expires": now + timedelta(seconds=ttl_seconds),
    }


# --- telemetry -------------------------------------------------------------------------------

# The operation's row as one precompiled statement (the ORM's create() compiles a
# 28-column INSERT on every call). A test checks these columns against the model and
# against the pipeline's fields.
TELEMETRY_COLUMNS = (
    "operation_id",
    "project_id",
    "api_key_id",
    "session_id",
    "end_user",
    "operation_type",
    "provider_name",
    "model_name",
    "tokens_in",
    "tokens_out",
    "retry_count",
    "latency_ms",
    "success",
    "cache_hit",
    "estimated_cost",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_savings",
    "started_at",
    "completed_at",
    "temperature",
    "top_p",
    "max_tokens",
    "error_code",
    "error_message",
    "attempts",
    "source",
    "time_to_first_token_ms",
    "streamed",
    "tools_sent",
    "images_sent",
    "choices",
    "tool_calls",
)


def telemetry_insert_sql(*, budget_overrun: str) -> str:
    """The row's INSERT; `budget_overrun` is the SQL expression of that column (computed
    on the reservation, in the same transaction)."""
    columns = (*TELEMETRY_COLUMNS, "budget_overrun")
    values = (*(f"%({c})s" for c in TELEMETRY_COLUMNS), budget_overrun)
    return (
        f"INSERT INTO {OperationTelemetry._meta.db_table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(values)})"
    )


# The row alone (no settle: never an overrun), or as the last statement of its settle,
# overrun when the settle released nothing (the reservation had expired).
ROW_SQL = telemetry_insert_sql(budget_overrun="false") + " RETURNING budget_overrun"
SETTLED_ROW_SQL = (
    telemetry_insert_sql(budget_overrun=NOT_RELEASED_SQL) + " RETURNING budget_overrun"
)


# --- spend budgets ---------------------------------------------------------------------------
# After the session's reservation statement, in the same transaction (PgStore's
# `_reserve_write`), on the shards this worker already knows (their pks, remembered by
# budgets.spending after its slow write made or found them): locked in pk order first
# (an UPDATE locks rows in whatever order its plan reads them, a sequential scan in their
# place on the page, which each update moves: at 50 calls in flight on two rows that
# deadlocked), then the worst case held on each only where it fits, and only if the
# session's reservation was written; the hold row written only if every shard took it.
# Then a guard divides by zero (a run-time value: never folded when planned) to roll the
# whole transaction back when the session's was written but not all the shards': all
# levels or none.
#
# These three are server-side prepared statements (PREPARE once per connection, then
# EXECUTE inside the step's one script): planned on every call they cost PostgreSQL more
# than the rest of the step (measured warm: ~0.3 ms of planning for the write alone).
# Their integer arrays are written into the EXECUTE as literals (psycopg's dumping of
# arrays was most of the step's client CPU).
_SHARD = SpendShard._meta.db_table
_HOLD = SpendHold._meta.db_table
_SESSION_HELD = f"EXISTS (SELECT 1 FROM {_RESERVATION} WHERE id = $4)"
_SPEND_WRITE = f"""
WITH ordered AS (
    SELECT id FROM {_SHARD} WHERE id = ANY($1) ORDER BY id FOR UPDATE
), held AS (
    UPDATE {_SHARD}
       SET tokens_reserved = tokens_reserved + $2,
           cost_reserved_micros = cost_reserved_micros + $3
     WHERE id IN (SELECT id FROM ordered)
       AND (allot_tokens IS NULL OR tokens_used + tokens_reserved + $2 <= allot_tokens)
       AND (allot_cost_micros IS NULL
            OR cost_accrued_micros + cost_reserved_micros + $3 <= allot_cost_micros)
       AND {_SESSION_HELD}
 RETURNING id
), hold AS (
    INSERT INTO {_HOLD} (id, operation_id, shards, tokens, cost_micros, created_at, expires_at)
    SELECT $5, $6, to_jsonb($1), $2, $3, $7, $8
     WHERE (SELECT count(*) FROM held) = cardinality($1)
)
SELECT 1 / (CASE WHEN (SELECT count(*) FROM held) = cardinality($1) OR NOT {_SESSION_HELD}
                 THEN 1 ELSE 0 END)
"""
# Each budget's period summed over its shards, after the write (same transaction).
_SPEND_TOTALS = f"""
SELECT budget_id, subject, period_start, sum(tokens_used), sum(cost_accrued_micros),
       sum(tokens_reserved), sum(cost_reserved_micros)
  FROM {_SHARD}
 WHERE (budget_id, subject, period_start) IN (
       SELECT budget_id, subject, period_start FROM {_SHARD} WHERE id = ANY($1))
 GROUP BY budget_id, subject, period_start
"""
# As budgets.spending.spend_hand_back: the reserved amounts come back only if this
# statement deletes the hold; the charges (per shard: a narrowed budget's only when its
# provider and model served) are made either way. The shards are locked in pk order
# first, as every write of shards locks them.
_SPEND_HAND_BACK = f"""
WITH gone AS (
    DELETE FROM {_HOLD} WHERE id = $1 RETURNING tokens, cost_micros
), ordered AS (
    SELECT id FROM {_SHARD} WHERE id = ANY($2) ORDER BY id FOR UPDATE
)
UPDATE {_SHARD} s
   SET tokens_reserved = s.tokens_reserved - coalesce((SELECT tokens FROM gone), 0),
       cost_reserved_micros = s.cost_reserved_micros - coalesce((SELECT cost_micros FROM gone), 0),
       tokens_used = s.tokens_used + c.tokens,
       cost_accrued_micros = s.cost_accrued_micros + c.cost,
       operation_count = s.operation_count + c.ops
  FROM unnest($2, $3, $4, $5) AS c(id, tokens, cost, ops)
 WHERE s.id = c.id AND s.id IN (SELECT id FROM ordered)
   AND (EXISTS (SELECT 1 FROM gone) OR c.tokens <> 0 OR c.cost <> 0 OR c.ops <> 0)
"""
# Their plans are generic from the first call (PostgreSQL's default plans each call
# afresh while a custom plan looks cheaper, which for `= ANY($1)` it kept doing).
SPEND_PREPARE_SQL = "SET plan_cache_mode = force_generic_plan;\n" + ";\n".join(
    f"PREPARE {name}({types}) AS {body}"
    for name, types, body in (
        (
            "aura_spend_write",
            "bigint[], bigint, bigint, uuid, uuid, uuid, timestamptz, timestamptz",
            _SPEND_WRITE,
        ),
        ("aura_spend_totals", "bigint[]", _SPEND_TOTALS),
        ("aura_spend_hand_back", "uuid, bigint[], bigint[], bigint[], bigint[]", _SPEND_HAND_BACK),
    )
)


def int_array(values: Sequence[int]) -> str:
    """`ARRAY[1,2]::bigint[]`: integers written into the SQL (int() refuses anything else)."""
    return f"ARRAY[{','.join(str(int(v)) for v in values)}]::bigint[]"


def spend_statements(*, pks: Sequence[int], session_hold: Any, **write: Any) -> list[Statement]:
    """The spend write (with its guard) and the totals, on the shards `pks` (in the order
    of the levels; `write`: `SpendAsk.write_args`; `session_hold`: the session
    reservation's id). Needs SPEND_PREPARE_SQL on the connection."""
    literal = int_array(pks)
    params = {
        "tokens": write["tokens"],
        "cost": write["cost_micros"],
        "session_hold": session_hold,
        "id": write["hold_id"],
        "operation": write["operation_id"],
        "now": timezone.now(),
        "expires": write["expires_at"],
    }
    return [
        (
            f"EXECUTE aura_spend_write({literal}, %(tokens)s, %(cost)s, %(session_hold)s, "
            "%(id)s, %(operation)s, %(now)s, %(expires)s)",
            params,
        ),
        (f"EXECUTE aura_spend_totals({literal})", {}),
    ]


def spend_hand_back_statement(
    hold: SpendHoldRef,
    *,
    charge: tuple[int, int] | None,
    served: tuple[str, str] | None,
    operations: int = 1,
) -> Statement:
    """The hold settled (`charge`) or released. Needs SPEND_PREPARE_SQL on the connection."""
    rows = sorted(hold.charges(served=served, charge=charge, operations=operations))
    columns = ", ".join(int_array([r[i] for r in rows]) for i in range(4))
    return f"EXECUTE aura_spend_hand_back(%(spend_id)s, {columns})", {"spend_id": hold.id}
