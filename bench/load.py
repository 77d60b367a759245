"""A small, cheap HTTP/1.1 load generator: one keep-alive connection per in-flight request.

    python bench/load.py --spec '{"port": 9100, "path": "/v1/chat/completions",
                                  "body": {...}, "concurrency": 50, "requests": 2000}'

Raw asyncio streams on uvloop (no HTTP library: the generator must not be what saturates).
Each connection first sends `warmup` requests; then the measured window opens (server CPU
read from /proc/<pid>/stat of `pids`) and connections send requests until `requests` are
done or `duration` seconds have passed. The string "{i}" in the body or a header value is
replaced by the connection's index (one budget session per connection). Prints one JSON
object: counts, throughput, latency percentiles, time to first body byte for streams,
server CPU and resident memory, and the generator's own CPU.
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (and their reaped children are not counted)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def postgres_cpu() -> dict[int, float]:
    """utime + stime of every PostgreSQL process now, by pid (the database's side of a
    request; shared with whatever else uses this server)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        found[int(entry)] = cpu_seconds([int(entry)])
    return found


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    def __init__(self, spec: dict) -> None:
        self.host = spec.get("host", "127.0.0.1")
        self.port = spec["port"]
        self.path = spec["path"]
        self.method = spec.get("method", "POST")
        self.body = json.dumps(spec["body"]) if spec.get("body") is not None else ""
        self.headers = spec.get("headers", {})
        self.concurrency = spec["concurrency"]
        self.requests = spec["requests"]
        self.duration = spec.get("duration", 30.0)
        self.warmup = spec.get("warmup", 1)
        self.stream = bool(spec.get("stream"))
        self.pids = spec.get("pids", [])
        self.remaining = self.requests
        self.deadline = 0.0
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0

    def request_bytes(self, i: int) -> bytes:
        body = self.body.replace("{i}", str(i)).encode()
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {str(v).replace('{i}', str(i))}" for k, v in self.headers.items()]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def one(self, reader, writer, request: bytes, record: bool) -> bool:
        """Send one request and read its response; False if the connection must go."""
        t0 = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        ttfb = None
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                await reader.readexactly(size + 2)
                if ttfb is None:
                    ttfb = time.perf_counter() - t0
        else:
            i = lower.find(b"content-length:")
            length = int(lower[i + 15 : lower.find(b"\r\n", i)]) if i >= 0 else 0
            if length:
                await reader.readexactly(length)
        elapsed = time.perf_counter() - t0
        if record:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                self.latencies.append(elapsed)
                if ttfb is not None:
                    self.ttfbs.append(ttfb)
            else:
                self.errors += 1
        return b"connection: close" not in lower

    async def connect(self):
        return await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def worker(self, i: int, ready: asyncio.Barrier, go: asyncio.Event) -> None:
        request = self.request_bytes(i)
        reader, writer = await self.connect()
        try:
            for _ in range(self.warmup):
                if not await self.one(reader, writer, request, record=False):
                    writer.close()
                    reader, writer = await self.connect()
            await ready.wait()
            await go.wait()
            while self.remaining > 0 and time.perf_counter() < self.deadline:
                self.remaining -= 1
                try:
                    keep = await self.one(reader, writer, request, record=True)
                except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                    # The server may close a keep-alive connection that sat idle (while
                    # the others warmed up): retry once on a new one, as HTTP clients do.
                    writer.close()
                    reader, writer = await self.connect()
                    try:
                        keep = await self.one(reader, writer, request, record=True)
                    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                        self.errors += 1
                        keep = False
                if not keep:
                    writer.close()
                    reader, writer = await self.connect()
        finally:
            writer.close()

    async def run(self) -> dict:
        ready = asyncio.Barrier(self.concurrency + 1)
        go = asyncio.Event()
        tasks = [asyncio.create_task(self.worker(i, ready, go)) for i in range(self.concurrency)]
        await ready.wait()
        cpu0, usage0 = cpu_seconds(self.pids), resource.getrusage(resource.RUSAGE_SELF)
        db0 = postgres_cpu()
        t0 = time.perf_counter()
        self.deadline = t0 + self.duration
        go.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        cpu1, usage1 = cpu_seconds(self.pids), resource.getrusage(resource.RUSAGE_SELF)
        db1 = postgres_cpu()
        # Processes alive at both ends (a connection opened during the window counts from 0).
        db_cpu = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items())
        done = len(self.latencies)
        client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        ms = [x * 1000 for x in self.latencies]
        return {
            "ok": done,
            "errors": self.errors,
            "statuses": self.statuses,
            "wall_s": round(wall, 3),
            "rps": round(done / wall, 1) if wall else 0.0,
            "p50_ms": round(percentile(ms, 0.50), 3),
            "p95_ms": round(percentile(ms, 0.95), 3),
            "p99_ms": round(percentile(ms, 0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
            "ttfb_p50_ms": round(percentile([x * 1000 for x in self.ttfbs], 0.5), 3)
            if self.ttfbs
            else None,
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "server_cpu_ms_per_req": round((cpu1 - cpu0) * 1000 / done, 3) if done else None,
            "server_rss_mb": [round(rss_mb(p), 1) for p in self.pids],
            "db_cpu_ms_per_req": round(db_cpu * 1000 / done, 3) if done else None,
            "client_cpu_s": round(client_cpu, 3),
            "client_cpu_ms_per_req": round(client_cpu * 1000 / done, 3) if done else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON object (see the module docstring)")
    parser.add_argument("--cpu", type=int, help="pin the generator to this core")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):  # not allowed here: run unpinned
            os.sched_setaffinity(0, {args.cpu})
    spec = json.loads(args.spec)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    json.dump(asyncio.run(Load(spec).run()), sys.stdout)


if __name__ == "__main__":
    main()
