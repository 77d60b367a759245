"""OpenTelemetry export (aura_orchestrator/tracing.py) against a real OTLP/HTTP collector
stub on loopback (aura_orchestrator/simulator/collector.py, which decodes the protobuf
with opentelemetry-proto's classes): the spans of real operations, their GenAI and
`aura.*` attributes equal to the telemetry row, attempts as children, content only when
asked, and a collector that is slow or gone never reaching a request."""

import asyncio
import time
from decimal import Decimal

import httpx
import pytest

from aura_orchestrator import tracing
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.db import db
from aura_orchestrator.simulator import Fault
from aura_orchestrator.simulator.collector import CollectedSpan, OtlpCollector
from budgets.limit_models import RateLimit
from telemetry.models import OperationTelemetry
from tests.pipeline.helpers import EXECUTE, body, micros, prompt_tokens

pytestmark = [pytest.mark.django_db(transaction=True)]

CHAT = "/v1/chat/completions"
SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 1, 3
STATUS_ERROR = 2


@pytest.fixture
def collector():
    server = OtlpCollector().start()
    yield server
    server.stop()


def _export_to(settings, endpoint: str, **config) -> tracing.Exporter:
    settings.OTEL = {**settings.OTEL, "ENDPOINT": endpoint, "SCHEDULE_DELAY_MILLIS": 50, **config}
    tracing.stop()
    exporter = tracing.start()
    assert exporter is not None
    return exporter


@pytest.fixture
def exporting(collector, settings):
    yield _export_to(settings, collector.endpoint)
    tracing.stop()


@pytest.fixture
def capturing(collector, settings):
    yield _export_to(settings, collector.endpoint, CAPTURE_CONTENT=True)
    tracing.stop()


def _sent(exporter: tracing.Exporter, collector: OtlpCollector) -> list[CollectedSpan]:
    """Everything queued, sent now (the thread would within 50 ms)."""
    exporter.flush()
    return collector.spans


def _trace(spans: list[CollectedSpan], operation_id: str) -> tuple[CollectedSpan, list]:
    """The operation's span and its attempt spans, in start order."""
    (root,) = [s for s in spans if s.attributes.get("aura.operation_id") == operation_id]
    children = sorted(
        (s for s in spans if s.parent_span_id == root.span_id), key=lambda s: s.start_ns
    )
    return root, children


async def test_an_operation_is_one_span_with_its_attempt_and_the_rows_numbers(
    asgi_client, provider, fake_upstream, exporting, collector
):
    """GenAI attributes and ours carry the telemetry row's values; the attempt is a CLIENT
    child in the same trace, within the operation's time; no content by default."""
    response = await asgi_client.post(
        EXECUTE,
        json=body(prompt="Tides [[cache:6,0]]", custom_preset={"max_tokens": 90}),
    )
    data = response.json()
    assert response.status_code == 200, data
    row = await OperationTelemetry.objects.aget(operation_id=data["operation_id"])

    root, children = _trace(_sent(exporting, collector), data["operation_id"])

    a = root.attributes
    assert root.name == "chat sim-gpt" and root.kind == SPAN_KIND_INTERNAL
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "sim-gpt"
    assert a["gen_ai.request.max_tokens"] == 90
    assert a["gen_ai.usage.input_tokens"] == row.tokens_in > 0
    assert a["gen_ai.usage.output_tokens"] == row.tokens_out > 0
    assert a["gen_ai.usage.cache_read.input_tokens"] == row.cache_read_tokens == 6
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.conversation.id"] == a["aura.session_id"] == "video-1"
    assert a["aura.operation_type"] == "planning"
    assert a["aura.project_id"] == row.project_id
    assert a["aura.provider"] == "primary"
    assert a["aura.cost_usd"] == pytest.approx(float(row.estimated_cost)) and a["aura.cost_usd"] > 0
    assert a["aura.cache_hit"] is False and a["aura.retry_count"] == 0
    assert "error.type" not in a and root.status_code != STATUS_ERROR
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert root.resource["service.name"] == "aura-orchestrator"

    (attempt,) = children
    assert attempt.trace_id == root.trace_id and attempt.kind == SPAN_KIND_CLIENT
    assert attempt.attributes["aura.attempt"] == 1 and attempt.attributes["aura.outcome"] == "ok"
    assert attempt.attributes["aura.fallback"] is False
    assert attempt.attributes["gen_ai.request.model"] == "sim-gpt"
    assert root.start_ns <= attempt.start_ns <= attempt.end_ns <= root.end_ns
    assert root.end_ns - root.start_ns >= row.latency_ms * 1_000_000


async def test_a_fallback_is_two_attempt_spans_the_first_failed(
    asgi_client, provider, backup_provider, fake_upstream, exporting, collector
):
    fake_upstream.enqueue(Fault(status=400))
    response = await asgi_client.post(EXECUTE, json=body(custom_preset={"max_retries": 3}))
    data = response.json()
    assert response.status_code == 200, data

    root, (first, second) = _trace(_sent(exporting, collector), data["operation_id"])

    assert root.attributes["aura.provider"] == "backup"
    assert root.attributes["aura.retry_count"] == 1
    assert first.attributes["aura.provider"] == "primary"
    assert first.attributes["error.type"] == "ProviderRequestRejected"
    assert first.attributes["http.response.status_code"] == 400
    assert first.status_code == STATUS_ERROR
    assert (first.attributes["aura.attempt"], first.attributes["aura.fallback"]) == (1, False)
    assert second.attributes["aura.provider"] == "backup"
    assert (second.attributes["aura.attempt"], second.attributes["aura.fallback"]) == (2, True)
    assert second.attributes["aura.route_index"] == 1
    assert "error.type" not in second.attributes
    assert first.end_ns <= second.start_ns


async def test_a_budget_refusal_is_marked_with_its_scope(
    asgi_client, provider, fake_upstream, exporting, collector
):
    worst = prompt_tokens("Plan a video about tides") + 100 * 2
    response = await asgi_client.post(
        EXECUTE,
        json=body(
            custom_preset={"max_tokens": 100},
            budget_constraint={
                "max_cost_per_session": str(micros(worst - 1)),
                "enforce_hard_limits": True,
            },
        ),
    )
    data = response.json()
    assert response.status_code == 402, data

    root, children = _trace(_sent(exporting, collector), data["operation_id"])

    assert root.attributes["error.type"] == "budget_exceeded"
    assert root.attributes["aura.budget.refused"] is True
    assert root.attributes["aura.budget.scope"] == "session:video-1"
    assert root.status_code == STATUS_ERROR and root.status_message.startswith("Budget exceeded")
    assert root.attributes["gen_ai.usage.input_tokens"] == 0
    assert children == []  # no provider was called


async def test_a_rate_limit_refusal_is_marked_with_its_limit(
    asgi_client, project, provider, fake_upstream, exporting, collector
):
    await db(RateLimit.objects.create, project=project, scope="project", requests_per_minute=1)
    first = await asgi_client.post(EXECUTE, json=body(enable_cache=False))
    refused = await asgi_client.post(EXECUTE, json=body(enable_cache=False))
    assert (first.status_code, refused.status_code) == (200, 429)

    root, children = _trace(_sent(exporting, collector), refused.json()["operation_id"])

    assert root.attributes["error.type"] == "rate_limited"
    assert root.attributes["aura.rate_limit.scope"] == "project:studio"
    assert root.attributes["aura.rate_limit.limit"] == "requests_per_minute"
    assert "aura.budget.refused" not in root.attributes
    assert children == []  # no provider was called


async def test_content_is_exported_only_when_asked(
    asgi_client, provider, fake_upstream, capturing, collector
):
    response = await asgi_client.post(EXECUTE, json=body(prompt="Tell me about tides"))
    data = response.json()
    assert response.status_code == 200, data

    root, _ = _trace(_sent(capturing, collector), data["operation_id"])

    assert '"content":"Tell me about tides"' in root.attributes["gen_ai.input.messages"]
    assert '"role":"user"' in root.attributes["gen_ai.input.messages"]
    output = root.attributes["gen_ai.output.messages"]
    assert data["content"] and data["content"] in output and '"role":"assistant"' in output


@pytest.fixture
def embed_model(provider, fake_upstream):
    """sim-embed on provider `primary` too."""
    provider_configure(
        name="primary",
        kind="openai",
        base_url=fake_upstream.openai_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-embed",
        input_price=Decimal("1"),
    )


async def test_streams_cache_hits_and_embeddings_are_spans_too(
    asgi_client, provider, embed_model, fake_upstream, exporting, collector
):
    """The gateway's stream (its row's tokens, the served attempt until the relay ends),
    a cache hit (no attempt), an embeddings operation."""
    stream = await asgi_client.post(
        CHAT,
        json={
            "model": "primary/sim-gpt",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Stream about tides"}],
        },
    )
    assert stream.status_code == 200, stream.text
    streamed = stream.headers["x-aura-operation-id"]
    first = await asgi_client.post(EXECUTE, json=body(session_id="cached", enable_cache=True))
    hit = await asgi_client.post(EXECUTE, json=body(session_id="cached", enable_cache=True))
    assert hit.json()["was_cached"] is True
    embedded = await asgi_client.post(
        "/v1/embeddings", json={"model": "sim-embed", "input": "tides"}
    )
    assert embedded.status_code == 200, embedded.text

    spans = _sent(exporting, collector)

    root, (attempt,) = _trace(spans, streamed)
    row = await OperationTelemetry.objects.aget(operation_id=streamed)
    assert root.attributes["gen_ai.request.stream"] is True
    assert root.attributes["aura.streamed"] is True
    assert root.attributes["gen_ai.usage.output_tokens"] == row.tokens_out > 0
    assert root.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert attempt.end_ns == root.end_ns  # the served stream's call lasts until its end
    cached, no_attempts = _trace(spans, hit.json()["operation_id"])
    assert cached.attributes["aura.cache_hit"] is True and no_attempts == []
    assert cached.attributes["aura.cost_usd"] == 0
    _trace(spans, first.json()["operation_id"])  # the answer that was cached: its own span
    vectors, _ = _trace(spans, embedded.headers["x-aura-operation-id"])
    assert vectors.attributes["gen_ai.operation.name"] == "embeddings"
    assert vectors.name == "embeddings sim-embed"


async def test_a_hanging_collector_neither_fails_nor_slows_requests(
    asgi_client, provider, fake_upstream, settings
):
    """The collector answers after 3 s and the queue holds 4 operations: requests answer
    as fast as without export, the queue stays bounded and what overflows is counted."""
    slow = OtlpCollector(delay=3.0).start()
    exporter = _export_to(settings, slow.endpoint, MAX_QUEUE_SIZE=4, MAX_EXPORT_BATCH_SIZE=2)
    try:
        await asgi_client.post(EXECUTE, json=body(session_id="warm"))  # the first export hangs
        await asyncio.sleep(0.2)
        timings = []
        for n in range(20):
            started = time.perf_counter()
            response = await asgi_client.post(EXECUTE, json=body(session_id=f"s-{n}"))
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            assert len(exporter.queue) <= 4
        assert max(timings) < 1.0, timings
        assert exporter.dropped >= 20 - 4
    finally:
        started = time.perf_counter()
        tracing.stop()  # at exit: bounded even though the collector hangs
        assert time.perf_counter() - started < tracing.SHUTDOWN_SECONDS + 1
        slow.stop()


async def test_a_collector_that_is_gone_costs_requests_nothing(
    asgi_client, provider, fake_upstream, settings
):
    gone = OtlpCollector().start()
    endpoint = gone.endpoint
    gone.stop()  # nothing listens there now: connections are refused
    exporter = _export_to(settings, endpoint, TIMEOUT_SECONDS=1)
    try:
        for n in range(5):
            response = await asgi_client.post(EXECUTE, json=body(session_id=f"g-{n}"))
            assert response.status_code == 200, response.text
        exporter.flush()
        assert exporter.failed >= 5 and exporter.exported == 0
    finally:
        tracing.stop()


def test_a_served_worker_exports_with_the_documented_variables(
    live_server_factory, transactional_db, api_key, provider
):
    """`manage.py serve` with OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS and OTEL_SERVICE_NAME:
    the worker starts its exporter itself and the gateway's calls arrive."""
    collector = OtlpCollector().start()
    try:
        server = live_server_factory(
            1,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_EXPORTER_OTLP_HEADERS="x-collector-token=secret%20one",
            OTEL_SERVICE_NAME="aura-test",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        response = httpx.post(
            f"{server.url}{CHAT}",
            headers={"Authorization": f"Bearer {api_key.raw_key}"},
            json={
                "model": "primary/sim-gpt",
                "messages": [{"role": "user", "content": "Served tides"}],
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        operation_id = response.headers["x-aura-operation-id"]
        spans = collector.wait_for(2)
        root, (attempt,) = _trace(spans, operation_id)
        row = OperationTelemetry.objects.get(operation_id=operation_id)
        assert root.attributes["gen_ai.usage.input_tokens"] == row.tokens_in
        assert root.attributes["aura.source"] == row.source
        assert root.resource["service.name"] == "aura-test"
        assert collector.headers[0]["x-collector-token"] == "secret one"
        assert attempt.attributes["aura.provider"] == "primary"
    finally:
        collector.stop()


def test_a_worker_sends_what_is_queued_when_it_stops(transactional_db, api_key, provider):
    """Two workers that would export only once a minute: their spans arrive when the
    server is stopped (SIGTERM), sent at each worker's exit."""
    from tests.conftest import LiveServer

    collector = OtlpCollector().start()
    server = LiveServer(
        workers=2,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        },
    )
    try:
        ids = []
        for n in range(4):
            response = httpx.post(
                f"{server.url}{EXECUTE}",
                headers={"Authorization": f"Bearer {api_key.raw_key}"},
                json=body(session_id=f"exit-{n}"),
                timeout=30,
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["operation_id"])
        time.sleep(0.5)
        assert collector.spans == []  # nothing sent yet: the schedule is a minute
        server.stop()
        spans = collector.wait_for(8, timeout=10)
        assert {s.attributes.get("aura.operation_id") for s in spans} >= set(ids)
    finally:
        server.stop()
        collector.stop()


def test_the_traces_endpoint_and_headers_are_read_as_the_specification_says():
    config = {"SDK_DISABLED": False, "TRACES_ENDPOINT": "", "ENDPOINT": "http://c:4318/"}
    assert tracing.traces_endpoint(config) == "http://c:4318/v1/traces"
    config["TRACES_ENDPOINT"] = "http://t:4318/custom"
    assert tracing.traces_endpoint(config) == "http://t:4318/custom"
    assert tracing.traces_endpoint(config | {"SDK_DISABLED": True}) == ""
    assert tracing.traces_endpoint(config | {"TRACES_ENDPOINT": "", "ENDPOINT": ""}) == ""
    assert tracing.parse_headers("a=1, b = x%20y ,broken,=z") == {"a": "1", "b": "x y"}


@pytest.fixture
def claude(db, fake_upstream):
    """Provider `claude` (Anthropic's Messages API) serving sim-claude."""
    provider_configure(
        name="claude",
        kind="anthropic",
        base_url=fake_upstream.anthropic_base_url,
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-claude",
        input_price=Decimal("1"),
        output_price=Decimal("2"),
    )


async def test_an_anthropic_route_is_named_so_with_its_cache_writes(
    asgi_client, provider, claude, exporting, collector
):
    response = await asgi_client.post(
        CHAT,
        json={
            "model": "claude/sim-claude",
            "messages": [{"role": "user", "content": "Tides [[cache:5,7]]"}],
        },
    )
    assert response.status_code == 200, response.text
    operation_id = response.headers["x-aura-operation-id"]
    row = await OperationTelemetry.objects.aget(operation_id=operation_id)

    root, (attempt,) = _trace(_sent(exporting, collector), operation_id)

    assert root.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert root.attributes["gen_ai.request.model"] == "claude/sim-claude"  # as asked
    assert root.attributes["gen_ai.response.model"] == "sim-claude"
    assert attempt.attributes["gen_ai.request.model"] == "sim-claude"
    assert root.attributes["gen_ai.usage.input_tokens"] == row.tokens_in
    assert root.attributes["gen_ai.usage.cache_read.input_tokens"] == row.cache_read_tokens == 5
    assert root.attributes["gen_ai.usage.cache_creation.input_tokens"] == 7
    assert row.cache_write_tokens == 7
