"""The one place where telemetry's reads ask which database they run on.

PostgreSQL gets its own SQL where it pays: `percentile_cont` for exact percentiles in
the same aggregate as the sums, `GROUPING SETS` for the overview's second level, `SET
LOCAL work_mem` for the overview's transaction, the planner's row estimate for the admin's
unfiltered list. Every other database (SQLite in development and in the tests) gets the
same answers portably: the two closest ranks, the grouping in Python, no tuning, an exact
count. Callers name what they want; only this module says how.
"""

import math
from collections.abc import Iterable, Iterator

from django.db import connection, connections
from django.db.models import Aggregate, FloatField, QuerySet

from telemetry.selectors.percentiles import continuous_percentile


def _postgresql(conn=connection) -> bool:
    return conn.vendor == "postgresql"


# --- Exact percentiles ------------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate `percentile_cont(f) WITHIN GROUP (ORDER BY x)`."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, *, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be within 0..1")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _percentiles_by_rank(
    qs: QuerySet, *, field: str, count: int, fractions: tuple[float, ...]
) -> list[float]:
    """Exact percentiles without percentile_cont: fetch only the two values around each
    rank, ordered by `field` (one query per fraction)."""
    if count == 0:
        return [0.0 for _ in fractions]
    ordered = qs.order_by(field).values_list(field, flat=True)
    result = []
    for fraction in fractions:
        position = fraction * (count - 1)
        low = math.floor(position)
        pair = list(ordered[low : low + 2])
        result.append(continuous_percentile(pair, position - low) if len(pair) > 1 else pair[0])
    return [float(v) for v in result]


def aggregate_with_percentiles(
    qs: QuerySet, *, sums: dict, count: str, field: str, fractions: tuple[float, ...]
) -> tuple[dict, tuple[float, ...]]:
    """`qs.aggregate(**sums)` and the exact percentiles (percentile_cont's definition) of
    `field` at `fractions`; `count` names the sum that counts the rows. On PostgreSQL the
    percentiles are in the same query; elsewhere one more query per fraction."""
    if _postgresql():
        names = [f"p{i}" for i in range(len(fractions))]
        percentiles = {
            name: PercentileCont(field, fraction=f)
            for name, f in zip(names, fractions, strict=True)
        }
        row = qs.aggregate(**sums, **percentiles)
        return row, tuple(float(row[name] or 0.0) for name in names)
    row = qs.aggregate(**sums)
    ranked = _percentiles_by_rank(qs, field=field, count=row[count] or 0, fractions=fractions)
    return row, tuple(ranked)


# --- Grouping sets ----------------------------------------------------------------------------


def grouping_sets(
    qs: QuerySet,
    *,
    within: str,
    sets: tuple[str, ...],
    sums: Iterable[str],
    maxima: Iterable[str],
    decimal: Iterable[str] = (),
    in_sql: bool | None = None,
) -> Iterator[tuple[str, dict]]:
    """The second level of a two-level aggregation. `qs` is the first level, one row per
    group holding a column `within`, every column of `sets` and the columns `sums` (added
    up) and `maxima`. Yields (set column, row) pairs whose sums, for each `within` value
    and each value of the set column, add up to that group's totals.

    On PostgreSQL (`in_sql` forces either way, for tests) one query with `GROUPING SETS`
    over `qs` as a subquery, so only the handful of result rows cross the wire; elsewhere
    every first-level row once per set (the caller merges rows of equal keys). Sums are
    bigint but for the `decimal` columns."""
    if in_sql if in_sql is not None else _postgresql():
        yield from _grouping_sets_in_sql(
            qs, within=within, sets=sets, sums=sums, maxima=maxima, decimal=set(decimal)
        )
        return
    for row in qs:
        for name in sets:
            yield name, row


def _grouping_sets_in_sql(
    qs: QuerySet,
    *,
    within: str,
    sets: tuple[str, ...],
    sums: Iterable[str],
    maxima: Iterable[str],
    decimal: set[str],
) -> Iterator[tuple[str, dict]]:
    quote = connection.ops.quote_name
    # GROUPING(a, b, …) sets a bit (the first column the highest) for each column that is
    # not grouped in the row's set.
    full = (1 << len(sets)) - 1
    set_of_bits = {full ^ (1 << (len(sets) - 1 - i)): name for i, name in enumerate(sets)}
    columns = ", ".join(quote(name) for name in sets)
    aggregates = ", ".join(
        [
            f"SUM({quote(name)}){'' if name in decimal else '::bigint'} AS {quote(name)}"
            for name in sums
        ]
        + [f"MAX({quote(name)}) AS {quote(name)}" for name in maxima]
    )
    inner, params = qs.query.sql_with_params()
    sql = (
        f"SELECT GROUPING({columns}) AS g, {quote(within)}, {columns}, {aggregates} "
        f"FROM ({inner}) AS level_one GROUP BY {quote(within)}, "
        f"GROUPING SETS ({', '.join(f'({quote(name)})' for name in sets)})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    for values in rows:
        row = dict(zip(names, values, strict=True))
        yield set_of_bits[row["g"]], row


# --- Tuning and estimates ---------------------------------------------------------------------


def work_mem_for_transaction(size: str) -> None:
    """Give the current transaction's sorts and hash tables `size` of memory each (SET
    LOCAL: this transaction only). Nothing on databases without the setting."""
    if _postgresql():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{size}'")


def estimated_rows(qs: QuerySet) -> int | None:
    """The planner's estimate of how many rows the table of `qs` holds (no scan; its
    filters are ignored), or None where the database keeps none."""
    conn = connections[qs.db]
    if not _postgresql(conn):
        return None
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [qs.model._meta.db_table],
        )
        row = cursor.fetchone()
    return row[0] if row else None
