"""The HTTP side of the fake upstream: routing, faults on the wire, pacing and drips.

`FakeUpstream` (upstream.py) owns the state; each connection's `_Handler` asks it for the
next fault and answers in the shape of the kind whose path was called (kinds.py), with
embeddings (embeddings.py: OpenAI's format) or with Anthropic's token count, the same
faults applying to all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import anthropic, embeddings, openai_compat
from .answers import compose_reply, prompt_tokens
from .faults import Fault
from .kinds import BY_PATH
from .wire import WireShape

if TYPE_CHECKING:
    from .upstream import FakeUpstream

logger = logging.getLogger("aura_orchestrator.simulator")

MODELS_PATH = "/v1/models"
# POST paths other than the completions', and the error shape each answers in.
_OTHER_POSTS = {
    embeddings.PATH: openai_compat.error,
    anthropic.COUNT_TOKENS_PATH: anthropic.error,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The stdlib default backlog of 5 refuses connections under a burst of concurrent calls.
    request_queue_size = 1024
    upstream: FakeUpstream

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, aborted streams, idle pool resets) are routine here.
        if isinstance(sys.exc_info()[1], OSError):
            logger.debug("fake upstream: client %s went away", client_address)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # Small writes otherwise wait on delayed ACKs: ~40 ms per non-streaming answer.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive, like real upstreams
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the peer may already be gone
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake upstream: " + format, *args)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.upstream._count(path)
        if path == MODELS_PATH:
            created = int(time.time())
            models = [
                {"id": model, "object": "model", "created": created, "owned_by": "aura-simulator"}
                for model in self.server.upstream.models
            ]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._send_json(404, openai_compat.error(404, f"no route for GET {path}"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = self.server.upstream
        upstream._count(path)
        shape = BY_PATH.get(path)
        if shape is None and path not in _OTHER_POSTS:
            self._send_json(404, openai_compat.error(404, f"no route for POST {path}"))
            return
        error = shape.error if shape is not None else _OTHER_POSTS[path]
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, error(400, "request body is not a JSON object"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault, serial = upstream._admit(body, headers)
        fault = fault or Fault()
        upstream._started()
        try:
            upstream._sleep(upstream._latency() + fault.delay)
            if self._faulted(fault, error):
                return
            if shape is not None:
                self._answer(body, fault, serial, shape)
            elif path == embeddings.PATH:
                self._embed(body, fault)
            else:
                self._count_tokens(body, fault)
        except OSError:  # the client gave up (timeout) or went away mid-stream
            self.close_connection = True
        finally:
            upstream._ended()

    def _faulted(self, fault: Fault, error: Callable[[int, str | None], dict]) -> bool:
        """Answer a reset or an error status in place of the answer; False otherwise."""
        if fault.reset:
            self._reset_connection()
            return True
        if fault.status != 200:
            body = fault.body if fault.body is not None else error(fault.status, None)
            self._send(fault.status, body, fault.headers or {}, fault)
            return True
        return False

    def _embed(self, body: dict, fault: Fault) -> None:
        extra = fault.headers or {}
        if fault.malformed:
            self._send(200, '{"object": "list", "data": [', extra, fault)
            return
        prompt_tokens = fault.usage[0] if fault.usage is not None else None
        try:
            answer = embeddings.embeddings(body, prompt_tokens)
        except embeddings.BadInput as bad:
            self._send(400, openai_compat.error(400, str(bad)), extra, fault)
            return
        self._send(200, answer, extra, fault)

    def _count_tokens(self, body: dict, fault: Fault) -> None:
        """Anthropic's count_tokens: the input_tokens /v1/messages reports for the body."""
        extra = fault.headers or {}
        if fault.malformed:
            self._send(200, '{"input_tokens": ', extra, fault)
        elif not isinstance(body.get("messages"), list):
            self._send(400, anthropic.error(400, "messages: Field required"), extra, fault)
        else:
            tokens = prompt_tokens(body, anthropic.SHAPE) if fault.usage is None else fault.usage[0]
            self._send(200, {"input_tokens": tokens}, extra, fault)

    def _answer(self, body: dict, fault: Fault, serial: int, shape: WireShape) -> None:
        extra = fault.headers or {}
        reply = compose_reply(body, fault, shape)
        model = str(body.get("model") or "sim-model")
        if body.get("stream"):
            events: Iterable[str]
            if fault.malformed:
                events = ["data: {not json\n\n"]
            else:
                events = shape.events(model, reply, serial, body)
            self._send_stream(events, extra, fault)
        elif fault.malformed:
            self._send(200, '{"id": "chatcmpl-sim", "choices": [', extra, fault)
        else:
            self._send(200, shape.answer(model, reply, serial, body), extra, fault)

    def _reset_connection(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _send_json(self, status: int, body: dict) -> None:
        self._send(status, body, {})

    def _send(
        self, status: int, body: str | dict, headers: dict, fault: Fault | None = None
    ) -> None:
        is_json = isinstance(body, dict)
        payload = (json.dumps(body) if is_json else str(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        if fault is None or not fault.drip:
            self.wfile.write(payload)
            return
        for piece in self._dripped(payload, fault):
            self.wfile.write(piece)
            self.wfile.flush()

    def _send_stream(
        self, events: Iterable[str], headers: dict, fault: Fault | None = None
    ) -> None:
        """SSE with chunked transfer encoding, so the connection stays reusable."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        dripping = fault is not None and fault.drip > 0
        pieces = (
            self._dripped("".join(events).encode(), fault)
            if dripping and fault is not None  # dripping says fault is set
            else self._paced(events)
        )
        for data in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        if dripping and self.server.upstream._stopping.is_set():
            self.close_connection = True  # cut short by stop(): no terminating chunk
            return
        self.wfile.write(b"0\r\n\r\n")

    def _paced(self, events: Iterable[str]) -> Iterator[bytes]:
        upstream = self.server.upstream
        for index, event in enumerate(events):
            if index:
                upstream._sleep(upstream.stream_chunk_delay)
            yield event.encode()

    def _dripped(self, payload: bytes, fault: Fault) -> Iterator[bytes]:
        """The first `fault.drip_after` bytes at once, then one byte every `fault.drip`
        seconds; the body is left short (connection closed) if the server stops."""
        upstream = self.server.upstream
        start = max(fault.drip_after, 0)
        if start:
            yield payload[:start]
        for index in range(start, len(payload)):
            upstream._sleep(fault.drip)
            if upstream._stopping.is_set():
                self.close_connection = True
                return
            yield payload[index : index + 1]
