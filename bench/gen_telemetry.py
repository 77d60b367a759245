"""Fill a scratch PostgreSQL database with generated telemetry and time the statistics.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aura_bench DJANGO_SECRET_KEY=x \
        .venv/bin/python bench/gen_telemetry.py --rows 10000000 --days 60

Creates (migrates) the schema, inserts the rows with one `INSERT … SELECT
generate_series` per million, rolls them up, then times `statistics` over the raw path
(short range, exact percentile_cont) and the rollup path (long ranges), and the API
view. Never point it at a database you care about: it adds millions of rows.
"""

import argparse
import os
import statistics as stats_lib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")

import django

django.setup()

from datetime import timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from aura_orchestrator.tenancy.services import project_get_or_create  # noqa: E402
from telemetry.selectors import statistics, timeseries  # noqa: E402
from telemetry.services import telemetry_rollup_backfill  # noqa: E402

TYPES = [
    "planning", "scripting", "ssml_planning", "visual_prompts", "rag_retrieval",
    "scene_analysis", "complexity_analysis", "coherence_validation", "narrative_validation",
    "transition_generation", "script_refinement", "creative", "completion",
]  # fmt: skip

INSERT = """
INSERT INTO telemetry_operationtelemetry (
    operation_id, project_id, session_id, operation_type, provider_name, model_name,
    tokens_in, tokens_out, retry_count, latency_ms, success, cache_hit, estimated_cost,
    started_at, completed_at, error_code, error_message, attempts, source, streamed)
SELECT
    md5(i::text || %(seed)s)::uuid,
    CASE WHEN i %% 10 = 0 THEN %(other)s ELSE %(project)s END,
    'bench-' || (i %% 50000),
    (%(types)s::text[])[1 + i %% 13],
    CASE WHEN i %% 5 = 0 THEN 'backup' ELSE 'primary' END,
    CASE WHEN i %% 5 = 0 THEN 'claude-sim' ELSE 'gpt-sim' END,
    200 + (i * 7) %% 1800, 50 + (i * 13) %% 900, (i %% 17 = 0)::int,
    -- a long-tailed latency: mostly 100-2000 ms, a few up to 40 s
    (100 + (hashint4(i::int) & 2047) + CASE WHEN i %% 97 = 0 THEN (i %% 40000) ELSE 0 END),
    i %% 23 <> 0, i %% 7 = 0,
    ((200 + (i * 7) %% 1800) + 2 * (50 + (i * 13) %% 900)) / 1000000.0,
    %(start)s::timestamptz + (i * %(step)s) * interval '1 microsecond',
    %(start)s::timestamptz + (i * %(step)s) * interval '1 microsecond' + interval '1 second',
    CASE WHEN i %% 23 = 0 THEN 'provider_error' ELSE '' END, '', '[]'::jsonb, 'api', false
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""


def timed(label: str, fn, repeat: int = 3):
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        runs.append((time.perf_counter() - t0) * 1000)
    source = getattr(value, "source", "")
    print(f"{label:<58} median {stats_lib.median(runs):9.1f} ms  {source}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--skip-insert", action="store_true")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only (generate_series).")
    call_command("migrate", verbosity=0)
    project = project_get_or_create(name="bench")
    other = project_get_or_create(name="bench-other")
    now = timezone.now()
    start = now - timedelta(days=args.days)
    if not args.skip_insert:
        step = int(args.days * 86400 * 1_000_000 / args.rows)
        t0 = time.perf_counter()
        chunk = 1_000_000
        with connection.cursor() as cursor:
            # Bulk load without the secondary indexes, then build them once (much faster
            # than maintaining six indexes row by row).
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                "'telemetry_operationtelemetry' AND indexname NOT LIKE '%%_pkey' "
                "AND indexname NOT LIKE '%%_key'"
            )
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
            cursor.execute("CREATE OR REPLACE FUNCTION hashint4(int) RETURNS int "
                           "AS 'hashint4' LANGUAGE internal IMMUTABLE STRICT")  # fmt: skip
            for first in range(0, args.rows, chunk):
                cursor.execute(
                    INSERT,
                    {
                        "seed": str(now.timestamp()),
                        "other": other.pk,
                        "project": project.pk,
                        "types": "{" + ",".join(TYPES) + "}",
                        "start": start,
                        "step": step,
                        "first": first,
                        "last": min(first + chunk, args.rows) - 1,
                    },
                )
                print(f"  inserted {min(first + chunk, args.rows):,} rows", flush=True)
            t1 = time.perf_counter()
            for _, definition in indexes:
                cursor.execute(definition)
            print(f"  indexes rebuilt in {time.perf_counter() - t1:.1f} s")
            cursor.execute("ANALYZE telemetry_operationtelemetry")
        print(f"insert: {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        written = telemetry_rollup_backfill(since=start, now=now)
        print(f"rollup backfill: {written:,} rollup rows in {time.perf_counter() - t0:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_operationtelemetry")
        print(f"raw rows: {cursor.fetchone()[0]:,}")
    pid = project.pk
    timed("raw, project, last 1 h (exact)", lambda: statistics(
        project_id=pid, since=now - timedelta(hours=1)))  # fmt: skip
    timed("raw, project, last 24 h (exact)", lambda: statistics(
        project_id=pid, since=now - timedelta(days=1)))  # fmt: skip
    timed("raw, project, last 7 d (exact, forced)", lambda: _forced_raw(pid, now))
    timed("rollup, project, last 30 d", lambda: statistics(
        project_id=pid, since=now - timedelta(days=30)))  # fmt: skip
    timed("rollup, project, all time (10M rows)", lambda: statistics(project_id=pid))
    timed("rollup, all projects, all time", lambda: statistics(project_id=None))
    timed("rollup, project, all time, provider+type filter", lambda: statistics(
        project_id=pid, provider="backup", operation_type="planning"))  # fmt: skip
    timed("timeseries, 30 d hourly", lambda: timeseries(
        project_id=pid, since=now - timedelta(days=30), until=now))  # fmt: skip
    from rest_framework.test import APIClient

    from aura_orchestrator.tenancy.services import api_key_create

    # The test client's default host, "testserver", is not in ALLOWED_HOSTS: every request
    # would be a 400 DisallowedHost (and a fast, meaningless timing).
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='b', project=project).raw_key}"
    )

    def api(query: str = ""):
        response = client.get(f"/api/v1/statistics{query}")
        assert response.status_code == 200, (response.status_code, response.content[:300])
        return response

    timed("GET /api/v1/statistics (all time)", api)
    since = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    timed("GET /api/v1/statistics?since=<24 h ago> (exact)", lambda: api(f"?since={since}"))


def _forced_raw(pid, now):
    from django.conf import settings

    old = dict(settings.AURA)
    settings.AURA.update(STATISTICS_RAW_MAX_ROWS=10**12, STATISTICS_RAW_MAX_DAYS=8)
    try:
        return statistics(project_id=pid, since=now - timedelta(days=7))
    finally:
        settings.AURA.clear()
        settings.AURA.update(old)


if __name__ == "__main__":
    main()
