"""What the OpenAI-compatible gateway adds: per request, and to the first token of a stream.

    .venv/bin/python bench/gateway_overhead.py [--requests 300] [--streams 60]
                                               [--database-url URL] [--workers 1]

One run, one machine, 127.0.0.1 only. It starts the fake upstream (this process), a
fresh database (a temporary SQLite file unless --database-url), `manage.py serve`, and
configures a provider and an API key through the public management commands. Then,
sequentially and interleaved (so drift hits both sides alike), the same chat request

  - straight to the fake upstream's /v1/chat/completions ("direct"), and
  - through the gateway's /v1/chat/completions (preset, budget reserve/settle, telemetry);

and for streams (the upstream waits --chunk-delay between events) the time to the first
content chunk, direct and through the gateway. Prints medians and p95 of both and of the
difference. Caching is off (the `completion` preset's default), so every gateway request
reaches the upstream.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aura_orchestrator import simulator  # noqa: E402  (stdlib only: no Django here)

# The simulator writes a response's headers and body in two sends; with Nagle on, the body
# waits for the client's delayed ACK (~40 ms) on some connections (measured: the gateway's
# upstream attempts took 44 ms p50 while direct calls took 1.4 ms). A real upstream does
# not stall like this, so the benchmark turns Nagle off on its own fake upstream.
simulator._Handler.disable_nagle_algorithm = True


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} p50 {statistics.median(values) * 1000:7.2f} ms   "
        f"p95 {_percentile(values, 0.95) * 1000:7.2f} ms   n={len(values)}"
    )


def _timed_post(client: httpx.Client, url: str, body: dict, headers: dict) -> float:
    started = time.perf_counter()
    response = client.post(url, json=body, headers=headers)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def _has_text(data: str) -> bool:
    choices = json.loads(data).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def _timed_first_chunk(client: httpx.Client, url: str, body: dict, headers: dict) -> float:
    """Seconds to the first SSE event carrying text; the rest of the stream is read too."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data: {") and _has_text(line[6:]):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the stream carried no text")
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=60)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="aura-gw-bench-")
    database_url = args.database_url or f"sqlite:///{tmp.name}/bench.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "aura_orchestrator.settings",
        "DJANGO_SECRET_KEY": "gateway-bench-only",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "BENCH_UPSTREAM_API_KEY": "sk-bench",
    }
    upstream = simulator.FakeUpstream().start()
    server = None
    try:
        _manage(env, "migrate", "--noinput")
        _manage(
            env,
            "configure_provider",
            "bench",
            "--kind=openai",
            f"--base-url={upstream.openai_base_url}",
            "--api-key-env=BENCH_UPSTREAM_API_KEY",
            "--model=sim-gpt",
            "--input-price=1",
            "--output-price=2",
            "--default",
        )
        key = _manage(env, "create_api_key", "gateway-bench").strip().splitlines()[-1]
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        gateway = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{gateway}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)

        direct_url = f"{upstream.openai_base_url}/chat/completions"
        gateway_url = f"{gateway}/v1/chat/completions"
        rest_url = f"{gateway}/api/v1/operations/execute"
        direct_headers = {"Authorization": "Bearer sk-bench"}
        gateway_headers = {"Authorization": f"Bearer {key}"}
        body = {
            "model": "sim-gpt",
            "messages": [{"role": "user", "content": "Say something short"}],
        }
        rest_body = {
            "session_id": "bench-rest",
            "operation_type": "completion",
            "prompt": "Say something short",
            "model": "sim-gpt",
        }
        words = " ".join(f"w{i}" for i in range(8))
        stream_body = {
            "model": "sim-gpt",
            "stream": True,
            "messages": [{"role": "user", "content": f"[[content:{words}]]"}],
        }
        with httpx.Client(timeout=60) as client:
            for _ in range(20):  # warm up both paths (connections, imports, tokenizer)
                _timed_post(client, direct_url, body, direct_headers)
                _timed_post(client, gateway_url, body, gateway_headers)
            direct, through, rest = [], [], []
            for _ in range(args.requests):
                direct.append(_timed_post(client, direct_url, body, direct_headers))
                through.append(_timed_post(client, gateway_url, body, gateway_headers))
                rest.append(_timed_post(client, rest_url, rest_body, gateway_headers))

            upstream.stream_chunk_delay = args.chunk_delay
            ttft_direct, ttft_through = [], []
            for _ in range(args.streams):
                ttft_direct.append(
                    _timed_first_chunk(client, direct_url, stream_body, direct_headers)
                )
                ttft_through.append(
                    _timed_first_chunk(client, gateway_url, stream_body, gateway_headers)
                )

        print(
            f"gateway {gateway} ({args.workers} worker(s)), database {database_url.split(':')[0]}"
        )
        print("non-streaming request, end to end:")
        print("  " + _summary("direct to fake upstream", direct))
        print("  " + _summary("through the gateway", through))
        print("  " + _summary("REST execute, same pipeline", rest))
        added = [t - d for d, t in zip(direct, through, strict=True)]
        print("  " + _summary("added by the gateway", added))
        print(f"stream, time to first content chunk (upstream events {args.chunk_delay}s apart):")
        print("  " + _summary("direct to fake upstream", ttft_direct))
        print("  " + _summary("through the gateway", ttft_through))
        added = [t - d for d, t in zip(ttft_direct, ttft_through, strict=True)]
        print("  " + _summary("added by the gateway", added))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        upstream.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
