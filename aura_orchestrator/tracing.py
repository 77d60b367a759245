"""OpenTelemetry export: every operation as a span, every provider attempt as its child.

Optional: on when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, read by settings.py into `settings.OTEL`); web
workers start it once (asgi.py), `demo` too. Spans follow the GenAI semantic conventions
(`gen_ai.*`) plus ours under `aura.*` (docs/OBSERVABILITY.md lists them).

Nothing of it is on the request's path but one check and one append: `conclude` (the one
ending of every operation) calls `record` when `exporter` is set, which puts a small
record of what the operation already has (its telemetry row, attempts and their clocks)
in a bounded queue, or counts it dropped when the queue is full. A daemon thread builds
the spans after the fact, with explicit start and end times, and posts them in batches
(OTLP/HTTP protobuf); a slow or dead collector only fills the queue.

The spans are opentelemetry-proto's messages (the OTLP exporter's own types), built
directly: the SDK's span objects and its Python encoder cost 208 µs of CPU per operation
here (8 % of an /execute), these about a fifth of that (bench/README.md, "OpenTelemetry").

Prompts and answers are kept only with `AURA_OTEL_CAPTURE_CONTENT=true`. At exit what is
queued is sent, within `SHUTDOWN_SECONDS`.
"""

import asyncio
import atexit
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
import orjson
from django.conf import settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aura_orchestrator import errors
from aura_orchestrator.providers.base import ChatMessage

if TYPE_CHECKING:
    from aura_orchestrator.catalog.selectors import Route
    from aura_orchestrator.pipeline.types import Run

logger = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 5.0  # at exit, at most this long to send what is queued
CONTENT_CHARS = 16_384  # captured content: each message's text cut to this length
SCOPE = "aura_orchestrator"  # the instrumentation scope's name

# gen_ai.provider.name by our provider kind (providers/registry.py); every kind that is
# not Anthropic speaks OpenAI's API.
_PROVIDER_NAMES = {"anthropic": "anthropic"}


@dataclass(slots=True)
class Ended:
    """What one ended operation hands the export thread: references to what the pipeline
    already built (nothing is copied or formatted on the request's path)."""

    fields: dict[str, Any]  # the telemetry row (attempts included)
    error: errors.AuraError | None
    finish_reasons: tuple[str | None, ...]
    request_model: str | None
    embedding: bool
    chain: Sequence["Route"]  # the plan's routes
    attempt_starts: list[float]  # perf_counter at each attempt's start (not skipped ones)
    t0: float  # perf_counter at the operation's start
    end_ns: int  # wall clock at its end
    end_pc: float  # perf_counter at its end
    ttft_ms: int | None
    messages: tuple[ChatMessage, ...] | None = None  # only when capturing content
    content: str | None = None


class Exporter:
    """The bounded queue and the thread that turns its records into spans and sends them."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = 10.0,
        service_name: str = "aura-orchestrator",
        resource_attributes: Mapping[str, str] | None = None,
        capture_content: bool = False,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_seconds: float = 1.0,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout_seconds
        self.capture_content = capture_content
        self.max_queue_size = max_queue_size
        self.batch_size = max_export_batch_size
        self.delay = schedule_delay_seconds
        self.queue: deque[Ended] = deque()
        self.dropped = 0  # operations not exported: the queue was full
        self.exported = 0  # spans the collector accepted
        self.failed = 0  # spans the collector refused or never got
        self._dropped_logged = 0
        self._quiet_until = 0.0  # failures are logged at most once a minute
        self._drops_quiet_until = 0.0  # and drops
        resource = {**(resource_attributes or {}), "service.name": service_name}
        self._resource = Resource()
        _set_attributes(self._resource.attributes, resource)
        self._client = httpx.Client(
            headers={**(headers or {}), "Content-Type": "application/x-protobuf"},
            timeout=timeout_seconds,
        )
        self._lock = threading.Lock()  # one drain at a time (the thread, a flush)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aura-otel-export", daemon=True)
        self._thread.start()

    # --- the thread's side (the request's is `record`, below: a check and an append) -----

    def _run(self) -> None:
        while not self._stop.wait(self.delay):
            self.flush()

    def flush(self) -> None:
        """Send everything queued now (the thread does it every `schedule_delay`)."""
        with self._lock:
            while self.queue:
                request = ExportTraceServiceRequest()
                resource_spans = request.resource_spans.add()
                resource_spans.resource.CopyFrom(self._resource)
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.name = SCOPE
                spans = scope_spans.spans
                for _ in range(min(self.batch_size, len(self.queue))):
                    ended = self.queue.popleft()
                    try:
                        self._spans(ended, spans)
                    except Exception:  # a bug here must not stop the export of the rest
                        logger.exception("could not build the spans of an operation")
                self._send(request, len(spans))
            now = time.monotonic()
            if self.dropped > self._dropped_logged and now >= self._drops_quiet_until:
                self._drops_quiet_until = now + 60  # at most one line a minute
                logger.warning(
                    "OpenTelemetry: %d operation(s) not exported so far (queue full)",
                    self.dropped,
                )
                self._dropped_logged = self.dropped

    def _send(self, request: ExportTraceServiceRequest, count: int) -> None:
        """One OTLP/HTTP export; tried again on the statuses the specification calls
        retryable (429, 502, 503, 504) or a connection error, with backoff, within the
        timeout; then counted failed."""
        if not count:
            return
        body = request.SerializeToString()
        deadline = time.monotonic() + self.timeout
        pause = 0.5
        while True:
            status: int | None = None
            try:
                status = self._client.post(self.endpoint, content=body).status_code
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
            else:
                problem = f"HTTP {status}"
                if 200 <= status < 300:
                    self.exported += count
                    return
            retryable = status in (None, 429, 502, 503, 504)
            if not retryable or self._stop.is_set() or time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            pause *= 2
        self.failed += count
        now = time.monotonic()
        if now >= self._quiet_until:  # a collector that is down: one line a minute
            self._quiet_until = now + 60
            logger.warning(
                "OpenTelemetry: spans not exported to %s (%s); %d so far",
                self.endpoint,
                problem,
                self.failed,
            )

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop the thread and send what is queued, within `timeout` (a dead collector
        must not hold the process's exit)."""
        self._stop.set()
        done = threading.Thread(target=self.flush, name="aura-otel-flush", daemon=True)
        done.start()
        done.join(timeout)

    # --- the spans ------------------------------------------------------------------------

    def _spans(self, ended: Ended, spans: Any) -> None:
        """The operation's span and its attempts' spans, added to `spans` (a batch's
        repeated field: built in place, nothing copied)."""
        fields = ended.fields
        error = ended.error

        def ns(pc: float) -> int:  # a perf_counter reading as wall-clock nanoseconds
            return ended.end_ns - int((ended.end_pc - pc) * 1e9)

        operation = "embeddings" if ended.embedding else "chat"
        kinds = {route.provider_name: route.kind for route in ended.chain}
        served = fields["provider_name"]
        system = _PROVIDER_NAMES.get(kinds.get(served, ""), "openai")
        request_model = ended.request_model or fields["model_name"]
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": system,
            "gen_ai.system": system,
            "gen_ai.request.model": request_model,
            "gen_ai.response.model": fields["model_name"],
            "gen_ai.conversation.id": fields["session_id"],
            "gen_ai.usage.input_tokens": fields["tokens_in"],
            "gen_ai.usage.output_tokens": fields["tokens_out"],
            "gen_ai.usage.cache_read.input_tokens": fields["cache_read_tokens"],
            "gen_ai.usage.cache_creation.input_tokens": fields["cache_write_tokens"],
            "aura.operation_id": str(fields["operation_id"]),
            "aura.session_id": fields["session_id"],
            "aura.operation_type": fields["operation_type"],
            "aura.project_id": fields["project_id"],
            "aura.provider": served,
            "aura.cost_usd": float(fields["estimated_cost"]),
            "aura.cache_hit": fields["cache_hit"],
            "aura.cache_savings_usd": float(fields["cache_savings"]),
            "aura.retry_count": fields["retry_count"],
            "aura.latency_ms": fields["latency_ms"],
            "aura.streamed": fields["streamed"],
            "aura.source": fields["source"],
            # None (not set) is left out by _set_attributes
            "gen_ai.request.max_tokens": fields["max_tokens"],
            "gen_ai.request.temperature": fields["temperature"],
            "gen_ai.request.top_p": fields["top_p"],
            "aura.api_key_id": fields["api_key_id"],
            "aura.end_user": fields["end_user"] or None,
        }
        if fields["choices"] > 1:
            attributes["gen_ai.request.choice.count"] = fields["choices"]
        if fields["streamed"]:
            attributes["gen_ai.request.stream"] = True
            if ended.ttft_ms is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = ended.ttft_ms / 1000
        reasons = [r for r in ended.finish_reasons if r]
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        if error is not None:
            attributes["error.type"] = error.code
            if isinstance(error, errors.BudgetExceeded):
                attributes["aura.budget.refused"] = True
                for key in ("scope", "period"):
                    if error.details.get(key):
                        attributes[f"aura.budget.{key}"] = str(error.details[key])
            elif isinstance(error, errors.LimitReached):  # one of our rate limits
                for key in ("scope", "limit"):
                    attributes[f"aura.rate_limit.{key}"] = str(error.details[key])
        if ended.messages is not None:
            attributes["gen_ai.input.messages"] = _input_messages(ended.messages)
            if ended.content is not None:
                attributes["gen_ai.output.messages"] = _output_message(
                    ended.content, reasons[0] if reasons else None
                )
        start = ns(ended.t0)
        trace_id = random.getrandbits(128).to_bytes(16, "big")
        root_id = random.getrandbits(64).to_bytes(8, "big")
        root = spans.add(
            trace_id=trace_id,
            span_id=root_id,
            name=f"{operation} {request_model}",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start,
            end_time_unix_nano=ended.end_ns,
        )
        _set_attributes(root.attributes, attributes)
        if error is not None:
            root.status.code = Status.STATUS_CODE_ERROR
            root.status.message = error.message[:500]
        attempts = fields["attempts"]
        for attempt in attempts:
            if attempt["outcome"] == "skipped":  # never called: an event, not a span
                event = root.events.add(time_unix_nano=start, name="aura.route_skipped")
                skipped = {"aura.provider": attempt["provider"], "aura.reason": attempt["error"]}
                _set_attributes(event.attributes, skipped)
        called = [a for a in attempts if a["outcome"] != "skipped"]
        starts = [ns(began) for began in ended.attempt_starts]
        bounds = [*starts[1:], ended.end_ns]  # an attempt ends before the next begins
        routes = [(route.provider_name, route.model_name) for route in ended.chain]
        # One start per provider call, in order (chain.record_attempt).
        calls = zip(called, starts, bounds, strict=False)
        for number, (attempt, began, bound) in enumerate(calls, 1):
            served_by = (attempt["provider"], attempt["model"])
            index = routes.index(served_by) if served_by in routes else -1
            ok = attempt["outcome"] == "ok"
            end = min(began + attempt["latency_ms"] * 1_000_000, bound)
            if ok and fields["streamed"] and number == len(called):
                end = ended.end_ns  # the served stream is relayed until the end
            system = _PROVIDER_NAMES.get(kinds.get(attempt["provider"], ""), "openai")
            child_attributes: dict[str, Any] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": system,
                "gen_ai.system": system,
                "gen_ai.request.model": attempt["model"],
                "aura.provider": attempt["provider"],
                "aura.attempt": number,
                "aura.route_index": index,
                "aura.fallback": index > 0,
                "aura.outcome": attempt["outcome"],
            }
            if ok:
                child_attributes["gen_ai.response.model"] = attempt["model"]
            else:
                child_attributes["error.type"] = attempt["outcome"]
                if attempt["status"] is not None:
                    child_attributes["http.response.status_code"] = attempt["status"]
            child = spans.add(
                trace_id=trace_id,
                span_id=random.getrandbits(64).to_bytes(8, "big"),
                parent_span_id=root_id,
                name=f"{operation} {attempt['model']}",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=began,
                end_time_unix_nano=end,
            )
            _set_attributes(child.attributes, child_attributes)
            if not ok:
                child.status.code = Status.STATUS_CODE_ERROR
                child.status.message = (attempt["error"] or "")[:500]


def _set_attributes(into: Any, attributes: Mapping[str, Any]) -> None:
    """Attributes added in place to a message's repeated KeyValue field: str, bool, int,
    float or a list of str; None is left out."""
    add = into.add
    for key, value in attributes.items():
        if value is None:
            continue
        pair = add(key=key)
        if isinstance(value, str):
            pair.value.string_value = value
        elif isinstance(value, bool):
            pair.value.bool_value = value
        elif isinstance(value, int):
            pair.value.int_value = value
        elif isinstance(value, float):
            pair.value.double_value = value
        else:
            pair.value.array_value.values.extend(AnyValue(string_value=str(v)) for v in value)


def _text(value: str | None) -> str:
    return (value or "")[:CONTENT_CHARS]


def _input_messages(messages: tuple[ChatMessage, ...]) -> str:
    """The prompt as the semantic conventions' `gen_ai.input.messages` (JSON)."""
    shown = []
    for message in messages:
        parts: list[dict[str, Any]] = [{"type": "text", "content": _text(message.content)}]
        for call in message.tool_calls or ():
            parts.append(
                {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
            )
        if message.tool_call_id is not None:
            parts = [
                {
                    "type": "tool_call_response",
                    "id": message.tool_call_id,
                    "response": parts[0]["content"],
                }
            ]
        shown.append({"role": message.role, "parts": parts})
    return orjson.dumps(shown).decode()


def _output_message(content: str, finish_reason: str | None) -> str:
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": _text(content)}],
        "finish_reason": finish_reason or "stop",
    }
    return orjson.dumps([message]).decode()


# --- The process's exporter ---------------------------------------------------------------

exporter: Exporter | None = None  # set: the one check `conclude` makes


def record(
    run: "Run", fields: dict[str, Any], error: errors.AuraError | None, content: str | None
) -> None:
    """Queue one ended operation for export (called by `ending.conclude` only when
    `exporter` is set): references, two clock readings, one append."""
    current = exporter
    if current is None:
        return
    if len(current.queue) >= current.max_queue_size:
        current.dropped += 1
        return
    request, plan, answer = run.request, run.plan, run.answer
    if answer is not None and answer.choices:
        reasons = tuple(choice.get("finish_reason") for choice in answer.choices)
    else:
        reasons = (run.finish_reason,)
    capture = current.capture_content
    current.queue.append(
        Ended(
            fields=fields,
            error=error,
            finish_reasons=reasons,
            request_model=request.model,
            embedding=request.embedding is not None,
            chain=plan.chain if plan is not None else (),
            attempt_starts=run.attempt_starts,
            t0=run.t0,
            end_ns=time.time_ns(),
            end_pc=time.perf_counter(),
            ttft_ms=run.ttft_ms,
            messages=request.messages if capture else None,
            content=content if capture else None,
        )
    )


def parse_headers(text: str) -> dict[str, str]:
    """`key=value,key2=value2` with URL-encoded values (OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_RESOURCE_ATTRIBUTES); malformed pairs are skipped."""
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


def traces_endpoint(config: dict[str, Any]) -> str:
    """Where spans go, as the OTLP exporter specification says: the signal's own endpoint
    as given, else the base endpoint + `v1/traces`. Empty: export is off."""
    if config["SDK_DISABLED"]:
        return ""
    if config["TRACES_ENDPOINT"]:
        return config["TRACES_ENDPOINT"]
    base = config["ENDPOINT"]
    if not base:
        return ""
    return base.rstrip("/") + "/v1/traces"


def start() -> Exporter | None:
    """Start this process's export if an endpoint is configured (once; web workers call
    it at start-up). Sent at exit within `SHUTDOWN_SECONDS`."""
    global exporter
    if exporter is not None:
        return exporter
    config = settings.OTEL
    endpoint = traces_endpoint(config)
    if not endpoint:
        return None
    exporter = Exporter(
        endpoint,
        headers=parse_headers(config["HEADERS"]),
        timeout_seconds=config["TIMEOUT_SECONDS"],
        service_name=config["SERVICE_NAME"],
        resource_attributes=parse_headers(config["RESOURCE_ATTRIBUTES"]),
        capture_content=config["CAPTURE_CONTENT"],
        max_queue_size=config["MAX_QUEUE_SIZE"],
        max_export_batch_size=config["MAX_EXPORT_BATCH_SIZE"],
        schedule_delay_seconds=config["SCHEDULE_DELAY_MILLIS"] / 1000,
    )
    atexit.register(stop)
    logger.info("OpenTelemetry: exporting spans to %s", endpoint)
    return exporter


class FlushAtShutdown:
    """The ASGI application, plus the lifespan protocol: at the server's shutdown (after
    its connections are done) what is queued is sent (`stop`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(stop)
                await send({"type": "lifespan.shutdown.complete"})
                return


def stop() -> None:
    """Send what is queued and stop (at exit; tests)."""
    global exporter
    current, exporter = exporter, None
    if current is not None:
        current.shutdown()
