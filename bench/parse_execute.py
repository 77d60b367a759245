"""CPU of reading one typical execute body, and of the fast front per request.

    DJANGO_SECRET_KEY=x DATABASE_URL=sqlite:////tmp/aura_parse_bench.sqlite3 REDIS_URL= \\
        .venv/bin/python bench/parse_execute.py

(1) the body parser alone: `parse_json_body` plus building the pipeline's request, by
each way the code base has (best of 5 timeit runs); (2) the fast front in process: the
whole ASGI call (headers, memo key, body, parse, response) with the pipeline stubbed out,
so only the front's own CPU is timed (process time per request, best of 5 x 2000), for
a valid body and for a body with three bad fields.
"""

import asyncio
import os
import sys
import time
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")

import django

django.setup()

import orjson  # noqa: E402
from django.core.management import call_command  # noqa: E402

from aura_orchestrator import pipeline  # noqa: E402
from aura_orchestrator.api.jsonbody import parse_json_body  # noqa: E402

TYPICAL = {
    "session_id": "video-123",
    "operation_type": "planning",
    "prompt": "Create a plan for a video about tides. " * 20,
    "system_prompt": "You are a video planning assistant",
    "enable_cache": True,
    "cache_ttl_seconds": 3600,
    "budget_constraint": {
        "max_tokens_per_operation": 5000,
        "max_cost_per_operation": "0.50",
        "max_tokens_per_session": 50000,
        "max_cost_per_session": "5.00",
        "enforce_hard_limits": True,
    },
    "custom_preset": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 3000, "max_retries": 2},
    "providers": ["primary", "backup"],
    "model": "gpt-4o-mini",
}
BODY = orjson.dumps(TYPICAL)
BAD = orjson.dumps({**TYPICAL, "prompt": 42, "enable_cache": "true", "tag": "x"})


def parsers() -> dict:
    found = {}
    try:  # before: DRF's serializer (Django's path) and the lean validator (the front)
        from aura_orchestrator.api.serializers import ExecuteInputSerializer
        from aura_orchestrator.api.views import operation_request_from
        from aura_orchestrator.fastpath import validate

        def drf():
            serializer = ExecuteInputSerializer(data=parse_json_body(BODY))
            serializer.is_valid(raise_exception=True)
            return operation_request_from(serializer.validated_data)

        found["DRF ExecuteInputSerializer"] = drf
        found["fast front's lean validator"] = lambda: validate.execute_request(
            parse_json_body(BODY)
        )
    except ImportError:
        pass
    try:  # after: the one parser, both paths
        from aura_orchestrator.api.bodies import execute_request

        found["api.bodies.execute_request"] = lambda: execute_request(parse_json_body(BODY))
    except ImportError:
        pass
    try:
        from aura_orchestrator.api import msgspec_probe

        found["msgspec Struct (probe)"] = lambda: msgspec_probe.execute_request(BODY)
    except ImportError:
        pass
    return found


def time_parsers() -> None:
    for name, parse in parsers().items():
        assert isinstance(parse(), pipeline.OperationRequest)
        best = min(timeit.repeat(parse, number=2000, repeat=5)) / 2000
        print(f"parse {name:34s} {best * 1e6:8.1f} µs")


def canned_result() -> pipeline.OperationResult:
    return pipeline.OperationResult(
        operation_id=uuid.uuid4(),
        success=True,
        content="ok",
        was_cached=False,
        error=None,
        telemetry={},
        budget={},
    )


async def front_cpu(raw_key: str, body: bytes, n: int) -> tuple[float, int]:
    from asgiref.sync import sync_to_async

    from aura_orchestrator.fastpath.app import FastFront
    from aura_orchestrator.tenancy.selectors import api_key_authenticate

    delegated = []

    async def django_app(scope, receive, send):
        # Only when the memo's entry ages out (AURA["CONFIG_CACHE_SECONDS"]): Django would
        # reload it; here it is reloaded and the request answered with a stub.
        delegated.append(1)
        await sync_to_async(api_key_authenticate)(raw_key=raw_key)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def execute(op, *, principal):
        return canned_result()

    pipeline.execute = execute
    front = FastFront(django_app)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/operations/execute",
        "scheme": "http",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {raw_key}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    statuses = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            await front(scope, receive, send)
        best = min(best, (time.process_time() - started) / n)
    if len(delegated) > 5:
        raise AssertionError(f"{len(delegated)} requests delegated to Django")
    return best, statuses[-1]


def main() -> None:
    time_parsers()
    call_command("migrate", verbosity=0)
    from aura_orchestrator.tenancy.selectors import api_key_authenticate
    from aura_orchestrator.tenancy.services import api_key_create, project_get_or_create

    raw_key = api_key_create(name="bench", project=project_get_or_create(name="bench")).raw_key
    time.sleep(0.5)  # past the configuration version the key's creation bumped
    api_key_authenticate(raw_key=raw_key)  # into the memo, as after a first request
    for label, body in (("valid body", BODY), ("3 bad fields", BAD)):
        try:
            cpu, status = asyncio.run(front_cpu(raw_key, body, 2000))
        except AssertionError as exc:
            print(f"front {label:34s} {exc}")
            continue
        print(f"front {label:34s} {cpu * 1e6:8.1f} µs CPU per request (status {status})")


if __name__ == "__main__":
    main()
