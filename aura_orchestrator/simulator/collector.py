"""A stub OpenTelemetry collector: OTLP/HTTP (protobuf) on loopback, for tests and bench.

`POST /v1/traces` bodies are decoded with opentelemetry-proto's own classes
(`ExportTraceServiceRequest`) and kept as plain `CollectedSpan`s. It can answer slowly
(`delay`) or with an error status (`status`), to show that a bad collector never reaches
a request. Run one by hand to watch a `demo` run's spans arrive:
`python -m aura_orchestrator.simulator.collector --port 4318`
(then `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 manage.py demo`).
"""

from __future__ import annotations

import argparse
import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TRACES_PATH = "/v1/traces"


@dataclass(slots=True)
class CollectedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)


def value_of(value: AnyValue) -> Any:
    """An OTLP attribute value as Python."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return None if which is None else getattr(value, which)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def spans_of(body: bytes) -> list[CollectedSpan]:
    """Every span of one export request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    CollectedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attributes_of(span.attributes),
                        status_code=span.status.code,
                        status_message=span.status.message,
                        events=[(e.name, attributes_of(e.attributes)) for e in span.events],
                        resource=resource,
                    )
                )
    return spans


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        collector = self.server.collector
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        collector.received(self.path, dict(self.headers.items()), body)
        if collector.delay:
            time.sleep(collector.delay)
        status = collector.status
        reply = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    collector: OtlpCollector


class OtlpCollector:
    """A collector on 127.0.0.1 (port 0: any free one); `endpoint` is the base URL to give
    as OTEL_EXPORTER_OTLP_ENDPOINT."""

    def __init__(
        self, *, port: int = 0, delay: float = 0.0, status: int = 200, keep: bool = True
    ) -> None:
        self.port = port
        self.keep = keep  # False: only count the spans (bench)
        self.count = 0
        self.delay = delay
        self.status = status
        self.posts = 0
        self.headers: list[dict[str, str]] = []
        self._spans: list[CollectedSpan] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpCollector:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.collector = self
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def received(self, path: str, headers: dict[str, str], body: bytes) -> None:
        spans = spans_of(body) if path == TRACES_PATH else []
        with self._lock:
            self.posts += 1
            self.count += len(spans)
            if self.keep:
                self.headers.append(headers)
                self._spans.extend(spans)

    @property
    def spans(self) -> list[CollectedSpan]:
        with self._lock:
            return list(self._spans)

    def reset(self) -> None:
        with self._lock:
            self._spans.clear()
            self.headers.clear()
            self.posts = 0

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[CollectedSpan]:
        """The spans once at least `count` arrived (or whatever arrived by `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans
            if len(spans) >= count:
                return spans
            time.sleep(0.05)
        return self.spans


def main() -> None:
    parser = argparse.ArgumentParser(description="A stub OTLP/HTTP collector that prints spans.")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--quiet", action="store_true", help="keep and print only the count")
    args = parser.parse_args()
    collector = OtlpCollector(port=args.port, keep=not args.quiet).start()
    print(f"OTLP collector stub on {collector.endpoint}{TRACES_PATH}", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(1)
            if args.quiet:
                if collector.count != seen:
                    seen = collector.count
                    print(f"spans received: {seen}", flush=True)
                continue
            spans = collector.spans
            for span in spans[seen:]:
                print(span.name, span.attributes.get("aura.operation_type", ""), flush=True)
            seen = len(spans)
    except KeyboardInterrupt:
        collector.stop()


if __name__ == "__main__":
    main()
