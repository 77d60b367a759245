"""A fast fake OpenAI-compatible upstream for benchmarks: raw asyncio (uvloop) HTTP/1.1.

    python bench/upstream.py --port 9100 [--cpu 1]

`POST [/lat/<ms>]/v1/chat/completions` answers after <ms> milliseconds (default
`--latency-ms`), as JSON with `usage`, or as SSE (`stream: true`, chunked, with a final
usage chunk). Keep-alive, pipelining-safe, no framework: it must cost far less CPU per
request than anything measured against it. `GET /healthz` answers 200.
"""

import argparse
import asyncio
import json
import os

COMPLETION = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"%s",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Benchmark answer."},'
    b'"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}'
)
CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"%s",'
    b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
)
LAST = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"%s",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"%s",'
    b'"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}\n\n'
    b"data: [DONE]\n\n"
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(asyncio.Protocol):
    default_latency = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = b""
        self.queue: asyncio.Queue[tuple[bytes, bytes, bytes] | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"content-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i)
                length = int(lower[i + 15 : j if j >= 0 else len(lower)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            line = head.split(b"\r\n", 1)[0]
            method, path, _ = line.split(b" ", 2)
            # Requests of one connection are answered in order (HTTP/1.1 pipelining).
            self.queue.put_nowait((method, path, body))

    async def serve(self) -> None:
        while True:
            method, path, body = await self.queue.get()
            latency = self.default_latency
            if path.startswith(b"/lat/"):
                ms, _, path = path[5:].partition(b"/")
                latency = int(ms) / 1000
                path = b"/" + path
            if method == b"GET":
                self.respond(200, b"application/json", b'{"ok":true}')
                continue
            if not path.endswith(b"/chat/completions"):
                self.respond(404, b"application/json", b'{"error":{"message":"not found"}}')
                continue
            request = json.loads(body or b"{}")
            model = str(request.get("model", "bench-model")).encode()[:100]
            if latency:
                await asyncio.sleep(latency)
            if request.get("stream"):
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
                    + _chunked(CHUNK % (model, b"Benchmark "))
                )
                await asyncio.sleep(0)  # the first chunk leaves on its own
                self.transport.write(
                    _chunked(CHUNK % (model, b"answer.") + LAST % (model, model)) + b"0\r\n\r\n"
                )
            else:
                self.respond(200, b"application/json", COMPLETION % model)

    def respond(self, status: int, content_type: bytes, body: bytes) -> None:
        reason = b"OK" if status == 200 else b"Not Found"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, content_type, len(body), body)
        )


async def main(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        Upstream, host, port, backlog=4096, reuse_address=True
    )
    print(f"fake upstream on http://{host}:{port}/ pid {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, help="pin to this core")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    Upstream.default_latency = args.latency_ms / 1000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.host, args.port))
