"""`FakeUpstream`: the fake server's state, lifecycle, scripting and inspection."""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence

from .faults import Fault, random_fault
from .kinds import COMPLETION_PATHS, SHAPES
from .server import _Handler, _Server

DEFAULT_MODELS = ("sim-gpt", "sim-gpt-mini", "sim-claude", "sim-embed")


class FakeUpstream:
    """Serves every kind's completions path (kinds.py: `/v1/chat/completions`,
    `/v1/messages`), `/v1/embeddings` and `/v1/models` from a daemon thread."""

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
        self._in_flight = 0
        self._peak_in_flight = 0
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

    def base_url(self, kind: str) -> str:
        """The base URL a provider of `kind` (a registered kind) is configured with."""
        return self.url + SHAPES[kind].base_path

    @property
    def openai_base_url(self) -> str:
        return self.base_url("openai")

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url("anthropic")

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
            self._peak_in_flight = self._in_flight

    @property
    def request_count(self) -> int:
        """Completion requests received (every kind's path)."""
        with self._lock:
            return sum(self._path_counts[path] for path in COMPLETION_PATHS)

    @property
    def path_counts(self) -> dict[str, int]:
        """Requests received per path, every path included."""
        with self._lock:
            return dict(self._path_counts)

    @property
    def requests(self) -> list[dict]:
        """JSON bodies of the completion and embedding requests received, most recent last."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (lower-cased names) of those requests, parallel to `requests`."""
        with self._lock:
            return list(self._headers)

    @property
    def peak_in_flight(self) -> int:
        """The most completion or embedding requests it was answering at once."""
        with self._lock:
            return self._peak_in_flight

    # -- used by the handler ----------------------------------------------------------------

    def _started(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def _ended(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count(self, path: str) -> None:
        with self._lock:
            self._path_counts[path] += 1

    def _admit(self, body: dict, headers: dict[str, str]) -> tuple[Fault | None, int]:
        """Record a completion or embedding request; return its scripted or random fault and
        its serial."""
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            serial = next(self._ids)
            if self._faults:
                return self._faults.popleft(), serial
            return random_fault(self._rng, self.error_rate), serial

    def _latency(self) -> float:
        with self._lock:
            return self.latency + self._rng.uniform(0.0, self.latency_jitter)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


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
    for kind, shape in SHAPES.items():
        print(f"  {shape.spec.label} base URL: {upstream.base_url(kind)}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()
