"""A fake OpenAI and Anthropic upstream: a real HTTP server on loopback, stdlib only.

Used by the test suite (scripted faults, captured requests) and by `manage.py demo`
(latency and random errors). Answers are deterministic for a given request, so cache tests
can compare them:

- content is "Simulated answer to: <last user message>", or a minimal JSON instance of the
  requested `response_format` schema, or exactly `...` when the last user message holds the
  marker `[[content:...]]`;
- usage is always reported: prompt tokens ~ characters / 4, completion tokens
  ~ content characters / 4 capped by max_tokens, or N when the marker `[[tokens_out:N]]` is
  present.

Scripted `Fault`s change the next answer: a status, a delay before answering, a malformed
body, a TCP reset, or a drip (headers at once, then the body one byte at a time: a
provider that is alive but never finishes, which no per-read timeout notices).

Run one by hand: `python -m aura_orchestrator.simulator --port 9000 --latency 0.2`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
COMPLETION_PATHS = (OPENAI_PATH, ANTHROPIC_PATH)
DEFAULT_MODELS = ("sim-gpt", "sim-gpt-mini", "sim-claude")
DEFAULT_MAX_TOKENS = 256

# The content marker may itself contain "]]" (JSON arrays): it ends at "]]" followed by the
# end of the message, whitespace or another marker.
_CONTENT_MARKER = re.compile(r"\[\[content:(.*?)\]\](?=\s|\[\[|$)", re.DOTALL)
_TOKENS_MARKER = re.compile(r"\[\[tokens_out:(\d+)\]\]")

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass
class Fault:
    """One scripted answer to the next completion request (consumed in FIFO order)."""

    status: int = 200
    headers: dict | None = None
    body: str | dict | None = None  # raw body override for error statuses
    delay: float = 0.0  # seconds to wait before answering (to trigger client timeouts)
    malformed: bool = False  # 200 whose body (or stream event) is not JSON
    reset: bool = False  # drop the connection with a TCP reset instead of answering
    content: str | None = None  # success content override
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens) override
    drip: float = 0.0  # > 0: headers at once, then the body one byte every `drip` seconds
    drip_after: int = 0  # bytes of the body sent at once before the drip starts


@dataclass(frozen=True)
class _Reply:
    content: str
    tokens_in: int
    tokens_out: int
    truncated: bool  # max_tokens cut the answer short


class FakeUpstream:
    """Serves `/v1/chat/completions`, `/v1/messages` and `/v1/models` from a daemon thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        error_rate: float = 0.0,
        seed: int | None = None,
        stream_chunk_delay: float = 0.0,
        models: Sequence[str] = DEFAULT_MODELS,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.latency_jitter = latency_jitter
        self.error_rate = error_rate
        self.stream_chunk_delay = stream_chunk_delay
        self.models = tuple(models)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults: deque[Fault] = deque()
        self._requests: list[dict] = []
        self._headers: list[dict[str, str]] = []
        self._path_counts: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.upstream = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a delay
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- scripting and inspection -----------------------------------------------------------

    def enqueue(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget scripted faults and captured requests."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._headers.clear()
            self._path_counts.clear()
            self._ids = itertools.count(1)

    @property
    def request_count(self) -> int:
        """Completion requests received (OpenAI and Anthropic paths)."""
        with self._lock:
            return sum(self._path_counts[path] for path in COMPLETION_PATHS)

    @property
    def path_counts(self) -> dict[str, int]:
        """Requests received per path, every path included."""
        with self._lock:
            return dict(self._path_counts)

    @property
    def requests(self) -> list[dict]:
        """JSON bodies of the completion requests received, most recent last."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (lower-cased names) of the completion requests, parallel to `requests`."""
        with self._lock:
            return list(self._headers)

    # -- used by the handler ----------------------------------------------------------------

    def _count(self, path: str) -> None:
        with self._lock:
            self._path_counts[path] += 1

    def _admit(self, body: dict, headers: dict[str, str]) -> tuple[Fault | None, int]:
        """Record a completion request; return its scripted or random fault and its serial."""
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            serial = next(self._ids)
            if self._faults:
                return self._faults.popleft(), serial
            if self.error_rate and self._rng.random() < self.error_rate:
                if self._rng.random() < 0.5:
                    return Fault(status=429, headers={"Retry-After": "0"}), serial
                return Fault(status=500), serial
            return None, serial

    def _latency(self) -> float:
        with self._lock:
            return self.latency + self._rng.uniform(0.0, self.latency_jitter)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


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
            self._send_json(404, _openai_error(404, f"no route for GET {path}"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = self.server.upstream
        upstream._count(path)
        anthropic = path == ANTHROPIC_PATH
        if path not in COMPLETION_PATHS:
            self._send_json(404, _openai_error(404, f"no route for POST {path}"))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, _error_body(anthropic, 400, "request body is not a JSON object"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault, serial = upstream._admit(body, headers)
        fault = fault or Fault()
        upstream._sleep(upstream._latency() + fault.delay)
        try:
            self._answer(body, fault, serial, anthropic=anthropic)
        except OSError:  # the client gave up (timeout) or went away mid-stream
            self.close_connection = True

    def _answer(self, body: dict, fault: Fault, serial: int, *, anthropic: bool) -> None:
        if fault.reset:
            self._reset_connection()
            return
        extra = fault.headers or {}
        if fault.status != 200:
            error = fault.body if fault.body is not None else _error_body(anthropic, fault.status)
            self._send(fault.status, error, extra, fault)
            return
        reply = _compose_reply(body, fault, anthropic=anthropic)
        model = str(body.get("model") or "sim-model")
        if body.get("stream"):
            events: Iterable[str]
            if fault.malformed:
                events = ["data: {not json\n\n"]
            elif anthropic:
                events = _anthropic_events(model, reply, serial)
            else:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                events = _openai_events(model, reply, serial, include_usage=include_usage)
            self._send_stream(events, extra, fault)
        elif fault.malformed:
            self._send(200, '{"id": "chatcmpl-sim", "choices": [', extra, fault)
        elif anthropic:
            self._send(200, _anthropic_message(model, reply, serial), extra, fault)
        else:
            completion = _openai_completion(model, reply, serial, body.get("n") or 1)
            self._send(200, completion, extra, fault)

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
        pieces = self._dripped("".join(events).encode(), fault) if dripping else self._paced(events)
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


# -- answers ------------------------------------------------------------------------------


def _text(content: Any) -> str:
    """Text of an OpenAI or Anthropic message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _compose_reply(body: dict, fault: Fault, *, anthropic: bool) -> _Reply:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [_text(m.get("content")) for m in messages]
    if anthropic:
        texts.append(_text(body.get("system")))
    last_user = next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    content = fault.content if fault.content is not None else _content_for(body, last_user)
    max_tokens = body.get("max_tokens")
    natural = len(content) // 4 + 1
    cap = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    tokens_in = max(1, sum(len(text) for text in texts) // 4)
    tokens_out = min(cap, natural)
    marker = _TOKENS_MARKER.search(last_user)
    if marker:
        tokens_out = int(marker.group(1))
    if fault.usage is not None:
        tokens_in, tokens_out = fault.usage
    truncated = isinstance(max_tokens, int) and natural > max_tokens
    return _Reply(content, tokens_in, tokens_out, truncated)


def _content_for(body: dict, last_user: str) -> str:
    marker = _CONTENT_MARKER.search(last_user)
    if marker:
        return marker.group(1)
    answer = f"Simulated answer to: {' '.join(last_user.split())[:60]}"
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or {"type": "object"}
            return json.dumps(example_for_schema(schema))
        if response_format.get("type") == "json_object":
            return json.dumps({"answer": answer})
    return answer


def example_for_schema(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A minimal instance of a JSON schema: required properties only, simplest values."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 32:
        return None
    if isinstance(schema.get("$ref"), str):
        return example_for_schema(_resolve_ref(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], root, depth + 1)
    type_ = schema.get("type")
    if isinstance(type_, list):
        type_ = next((t for t in type_ if t != "null"), "null")
    if type_ is None:
        type_ = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if type_ == "object":
        properties = schema.get("properties") or {}
        return {
            name: example_for_schema(properties.get(name, {}), root, depth + 1)
            for name in schema.get("required") or []
        }
    if type_ == "array":
        item = example_for_schema(schema.get("items", {}), root, depth + 1)
        return [item] * int(schema.get("minItems", 0))
    if type_ in ("integer", "number"):
        value = max(1, math.ceil(schema.get("minimum", 1)))
        return min(value, math.floor(schema.get("maximum", value)))
    if type_ == "boolean":
        return True
    if type_ == "null":
        return None
    return "x" * max(1, int(schema.get("minLength", 1)))


def _resolve_ref(root: Any, ref: str) -> Any:
    """A local JSON pointer ("#/$defs/Item"); remote references resolve to nothing."""
    if not ref.startswith("#/"):
        return None
    node = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def _pieces(content: str) -> list[str]:
    """Word-sized stream deltas that concatenate back to the content."""
    return re.findall(r"\s*\S+\s*", content) or [content]


def _openai_usage(reply: _Reply, choices: int = 1) -> dict:
    tokens_out = reply.tokens_out * choices
    return {
        "prompt_tokens": reply.tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": reply.tokens_in + tokens_out,
    }


def _openai_completion(model: str, reply: _Reply, serial: int, choices: int) -> dict:
    finish = "length" if reply.truncated else "stop"
    return {
        "id": f"chatcmpl-sim-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": finish,
            }
            for index in range(choices)
        ],
        "usage": _openai_usage(reply, choices),
    }


def _openai_events(model: str, reply: _Reply, serial: int, *, include_usage: bool) -> list[str]:
    created = int(time.time())

    def event(choices: list[dict], usage: dict | None = None) -> str:
        body = {
            "id": f"chatcmpl-sim-{serial}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:  # like OpenAI: null on every chunk but the last
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    def choice(delta: dict, finish: str | None = None) -> list[dict]:
        return [{"index": 0, "delta": delta, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": ""}))]
    events += [event(choice({"content": piece})) for piece in _pieces(reply.content)]
    events.append(event(choice({}, "length" if reply.truncated else "stop")))
    if include_usage:
        events.append(event([], _openai_usage(reply)))
    events.append("data: [DONE]\n\n")
    return events


def _anthropic_message(model: str, reply: _Reply, serial: int) -> dict:
    return {
        "id": f"msg_sim_{serial}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.content}],
        "stop_reason": "max_tokens" if reply.truncated else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.tokens_in, "output_tokens": reply.tokens_out},
    }


def _anthropic_events(model: str, reply: _Reply, serial: int) -> list[str]:
    def event(name: str, data: dict) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    start = _anthropic_message(model, reply, serial)
    start.update(content=[], stop_reason=None)
    start["usage"] = {"input_tokens": reply.tokens_in, "output_tokens": 1}
    events = [
        event("message_start", {"message": start}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
    ]
    events += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in _pieces(reply.content)
    ]
    stop_reason = "max_tokens" if reply.truncated else "end_turn"
    events += [
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": reply.tokens_out},
            },
        ),
        event("message_stop", {}),
    ]
    return events


def _openai_error(status: int, message: str | None = None) -> dict:
    if status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    return {
        "error": {
            "message": message or f"Simulated upstream error (HTTP {status})",
            "type": kind,
            "code": code,
        }
    }


def _error_body(anthropic: bool, status: int, message: str | None = None) -> dict:
    if not anthropic:
        return _openai_error(status, message)
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {
            "type": kind,
            "message": message or f"Simulated upstream error (HTTP {status})",
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI and Anthropic upstream on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--jitter", type=float, default=0.0, help="extra uniform latency")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 429/500 answers")
    parser.add_argument("--stream-chunk-delay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    upstream = FakeUpstream(
        host=args.host,
        port=args.port,
        latency=args.latency,
        latency_jitter=args.jitter,
        error_rate=args.error_rate,
        seed=args.seed,
        stream_chunk_delay=args.stream_chunk_delay,
    ).start()
    print(f"Fake upstream on {upstream.url}")
    print(f"  OpenAI base URL:    {upstream.openai_base_url}")
    print(f"  Anthropic base URL: {upstream.anthropic_base_url}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
