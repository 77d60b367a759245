"""The hot path in one process, no HTTP server: database round trips and a CPU profile.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aura_bench DJANGO_SECRET_KEY=x \\
        .venv/bin/python bench/inproc.py [--upstream-port PORT] [--profile] [-n 300]

Needs a database seeded by bench/run.py and a running fake upstream (`bench/upstream.py
--port PORT`; with --upstream-port the seeded providers are pointed at it). Prints every
SQL statement of one execute (no cache, cache miss, cache hit), the ORM's and the async
store's, grouped by round trip, and, with --profile, yappi's top functions over n executes
through the served ASGI application (the fast front, or Django's stack when the request
is handed over) driven by an in-process ASGI call.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")


class Statements:
    """Every statement any thread sends, via the cursor wrapper's class."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def install(self) -> None:
        from django.db.backends import utils

        original = utils.CursorWrapper._execute
        log = self.sql

        def _execute(cursor, sql, params, *ignored):
            log.append(sql)
            return original(cursor, sql, params, *ignored)

        utils.CursorWrapper._execute = _execute

        # The async store (store/pg.py): statements on psycopg's async connections; a
        # pipeline's statements share one round trip, marked with "|".
        import psycopg

        original_async = psycopg.AsyncConnection.execute

        async def execute(conn, query, params=None, **kwargs):
            mark = "  |" if conn._pipeline is not None else ""
            log.append(f"{mark}[async] {query.strip()}")
            return await original_async(conn, query, params, **kwargs)

        psycopg.AsyncConnection.execute = execute


async def asgi_post(app, path: str, body: dict, headers: dict[str, str]) -> tuple[int, bytes]:
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status, chunks = 0, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def main(args) -> None:
    from aura_orchestrator.asgi import application as app
    from aura_orchestrator.catalog.models import Provider
    from aura_orchestrator.tenancy.models import Project
    from aura_orchestrator.tenancy.services import api_key_create

    def new_key() -> str:
        if args.upstream_port:
            for name, path in (("bench", ""), ("bench-slow", "/lat/1000")):
                Provider.objects.filter(name=name).update(
                    base_url=f"http://127.0.0.1:{args.upstream_port}{path}/v1"
                )
        project = Project.objects.get(name=args.project)
        created = api_key_create(name="inproc", project=project)
        if args.project == "bench-spend":  # as bench/run.py's: the key's day budget too
            from decimal import Decimal

            from budgets.models import SpendBudget

            SpendBudget.objects.create(
                project=project,
                scope="api_key",
                api_key=created.api_key,
                period="day",
                max_tokens=10**13,
                max_cost=Decimal("10000000"),
            )
        return created.raw_key

    key = await asyncio.to_thread(new_key)
    headers = {"authorization": f"Bearer {key}"}
    body = {
        "session_id": "bench-0",
        "operation_type": "completion",
        "prompt": f"in-process probe {time.time()}",
        "custom_preset": {"max_tokens": 200},
    }
    statements = Statements()
    statements.install()
    for label, extra in [
        ("warm-up", {}),
        ("execute, no cache", {}),
        ("execute, cache miss", {"enable_cache": True}),
        ("execute, cache hit", {"enable_cache": True}),
    ]:
        statements.sql.clear()
        status, out = await asgi_post(app, "/api/v1/operations/execute", body | extra, headers)
        print(f"\n## {label}: HTTP {status}, {len(statements.sql)} statements")
        if status != 200:
            print(out[:500])
        for sql in statements.sql:
            print("  ", sql[:160])
    if args.finish_in_one_transaction:
        # Proposal for the pipeline, measured here: settle, cache store and telemetry of
        # `ending.write_finish` commit together (one WAL flush instead of two or three).
        from django.db import transaction

        from aura_orchestrator.pipeline import ending

        finish = ending.write_finish

        def _finish_atomic(*a, **k):
            with transaction.atomic():
                return finish(*a, **k)

        ending.write_finish = _finish_atomic
    path, timed = "/api/v1/operations/execute", body
    if args.gateway or args.stream:  # the same question as a plain chat completion
        path = "/v1/chat/completions"
        timed = {
            "model": "bench-model",
            "messages": [{"role": "user", "content": body["prompt"]}],
            "max_tokens": 200,
            "metadata": {"session_id": "bench-0"},
            "stream": args.stream,
        }
    t0, cpu0 = time.perf_counter(), time.process_time()
    statuses = Counter([(await asgi_post(app, path, timed, headers))[0] for _ in range(args.n)])
    wall = (time.perf_counter() - t0) / args.n * 1000
    cpu = (time.process_time() - cpu0) / args.n * 1000
    print(f"\n{args.n} {path} in process: {wall:.2f} ms wall, {cpu:.2f} ms CPU each")
    print(f"statuses: {dict(statuses)}")
    if args.profile:
        # yappi with the CPU clock sees every thread (the db() units run in executor
        # threads, which cProfile would miss).
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start(builtins=False, profile_threads=True)
        for _ in range(args.n):
            await asgi_post(app, "/api/v1/operations/execute", body, headers)
        yappi.stop()
        stats = yappi.get_func_stats()
        total = sum(t.ttot for t in yappi.get_thread_stats())
        print(f"profiled: {total / args.n * 1000:.2f} ms CPU per execute over all threads")
        for sort, label in (("ttot", "inclusive"), ("tsub", "self")):
            print(f"\n### top by {label} CPU (ms per execute)")
            for entry in stats.sort(sort, "desc")[: args.top]:
                value = entry.ttot if sort == "ttot" else entry.tsub
                where = f"{Path(entry.module).name}:{entry.lineno} {entry.name}"
                print(f"{value / args.n * 1000:7.3f}  {where}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--project",
        default="bench",
        help="bench-spend: calls that hold a project and a key spend budget too",
    )
    parser.add_argument("--upstream-port", type=int)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--finish-in-one-transaction", action="store_true")
    parser.add_argument(
        "--gateway", action="store_true", help="time /v1/chat/completions instead of execute"
    )
    parser.add_argument("--stream", action="store_true", help="the same, streamed")
    args = parser.parse_args()
    import django

    django.setup()
    from django.db import connections

    # Like `serve`: the psycopg pool, so connections are not what is measured.
    connections["default"].settings_dict.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": 8,
    }
    connections.close_all()
    asyncio.run(main(args))
