"""The chaos harness: a PostgreSQL proxy that can be cut, a server reached through it,
worker pids, a bounded load generator, and the invariants checked from the database.

Everything runs on loopback and is bounded in count and time. The fixtures that put these
together are in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.db import connections
from django.db.models import Sum

from budgets.models import BudgetReservation, LlmSession
from telemetry.models import OperationTelemetry
from tests.conftest import ROOT, LiveServer, _test_database_url

EXECUTE = "/api/v1/operations/execute"
CHAT = "/v1/chat/completions"
SUMMARY_PATH = ROOT / "var" / "chaos-summary.txt"
REAL_RESTART_ENV = "AURA_CHAOS_REAL_PG_RESTART"


# --- PostgreSQL, with an outage on demand ---------------------------------------------------


class PgProxy:
    """A TCP proxy between the server and PostgreSQL, in a thread of its own (asyncio).

    `cut()` closes every open connection both ways (a reset, as when the database
    process dies) and closes each new connection as soon as it is accepted; `restore()`
    forwards again. `stall()` first, optionally: nothing is forwarded any more (queries
    in flight hang, new connections wait) until `cut()` or `restore()`, so that a cut
    finds queries in flight, as a database that hangs and then dies does. The database
    itself is never touched: other test runs share it."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = 0
        self.cut_now = False
        self.accepted = 0
        self.refused = 0
        self.severed = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaos-pg-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    def start(self) -> PgProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def database_url(self, url: str) -> str:
        """`url` (a postgres:// URL) pointed at this proxy instead."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def cut(self) -> None:
        self._run(self._cut())

    def restore(self) -> None:
        self.cut_now = False
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        if self._server is not None:
            self._run(self._close())
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self, coro: Awaitable):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _cut(self) -> None:
        self.cut_now = True
        self._flowing.set()  # stalled pumps and accepts go on, and find it cut
        for pair in list(self._pairs):
            self.severed += 1
            for writer in pair:
                writer.transport.abort()

    async def _close(self) -> None:
        self._server.close()
        await self._cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        if self.cut_now:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for end in pair:
                end.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self.cut_now:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()  # the other direction ends too


class RealPgRestart:
    """Opt-in (AURA_CHAOS_REAL_PG_RESTART=1, root, pg_ctlcluster): the outage is a real
    stop and start of the local cluster serving port 5432, behind the same proxy. It
    interrupts every other user of that cluster: never on by default."""

    def __init__(self, proxy: PgProxy) -> None:
        self.proxy = proxy
        self.cluster = self._cluster()

    @staticmethod
    def available() -> bool:
        return (
            os.environ.get(REAL_RESTART_ENV) == "1"
            and os.geteuid() == 0
            and shutil.which("pg_ctlcluster") is not None
        )

    @staticmethod
    def _cluster() -> tuple[str, str]:
        listed = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
        ).stdout
        for line in listed.splitlines():
            version, name, port, *_ = line.split()
            if port == "5432":
                return version, name
        raise RuntimeError(f"no cluster on port 5432: {listed!r}")

    def cut(self) -> None:
        subprocess.run(["pg_ctlcluster", *self.cluster, "stop", "-m", "fast"], check=True)
        self.proxy.cut()

    def restore(self) -> None:
        subprocess.run(["pg_ctlcluster", *self.cluster, "start"], check=True)
        self.proxy.restore()
        connections.close_all()  # the test's own connection died with the server


# --- The server -------------------------------------------------------------------------


class ChaosServer:
    """`manage.py serve --workers N` on the test database reached through `proxy`, with a
    journal directory of its own; production-like memo (5 s) so the fast front serves.
    Pools of 8 (not 16) connections: PostgreSQL is shared with other test runs, and two
    workers with two pools each may otherwise take 64 of its 100 connections."""

    def __init__(self, proxy: PgProxy, *, workers: int = 2, **env: str) -> None:
        self.proxy = proxy
        self.journal = tempfile.mkdtemp(prefix="aura-chaos-journal-")
        self.live = LiveServer(
            workers=workers,
            env={
                "DATABASE_URL": proxy.database_url(_test_database_url()),
                "AURA_CONFIG_CACHE_SECONDS": "5",
                "AURA_JOURNAL_DIR": self.journal,
                "AURA_DB_POOL_MAX": "8",
                **env,
            },
        )
        self.url = self.live.url
        self.pid = self.live.process.pid
        self.workers = workers

    def worker_pids(self) -> list[int]:
        return worker_pids(self.pid)

    def busiest_worker(self) -> int:
        """The worker holding the most client connections (uvicorn's workers accept from
        one shared socket, so a keep-alive client may be served by one worker only)."""
        port = int(self.url.rsplit(":", 1)[1])
        return max(self.worker_pids(), key=lambda pid: established_connections(pid, port))

    def wait_for_workers(self, *, exclude: Iterable[int] = (), timeout: float = 30) -> float:
        """Seconds until `workers` worker processes run, none of them in `exclude`."""
        started = time.monotonic()
        excluded = set(exclude)
        while time.monotonic() - started < timeout:
            pids = self.worker_pids()
            if len(pids) == self.workers and not excluded & set(pids):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(
            f"workers {self.worker_pids()} (excluding {excluded}) after {timeout}s"
        )

    def journal_violations(self) -> list[str]:
        """Finishes still waiting in this server's journal, or refused by the database
        (aura_orchestrator/store/journal.py): once the database is back, none."""
        problems = []
        directory = Path(self.journal)
        pending = sum(
            len(path.read_bytes().splitlines()) for path in directory.glob("journal-[0-9]*.jsonl")
        )
        if pending:
            problems.append(f"{pending} journaled finish(es) not replayed")
        failed = directory / "journal-failed.jsonl"
        if failed.exists() and failed.read_bytes().strip():
            problems.append(f"{len(failed.read_bytes().splitlines())} journaled finish(es) refused")
        return problems

    def log_tail_count(self, text: str) -> int:
        return self.live.log_tail(10**8).count(text)

    def log_problems(self) -> dict:
        """The server's log file, and the tracebacks and warnings it holds (summary)."""
        text = self.live.log_tail(10**8)
        return {
            "file": str(self.live.log_path.relative_to(ROOT)),
            "tracebacks": text.count("Traceback (most recent call last)"),
            "errors": len(re.findall(r" (?:ERROR|CRITICAL) ", text)),
            "warnings": len(re.findall(r" WARNING ", text)),
        }

    def stop(self) -> None:
        self.live.stop()
        shutil.rmtree(self.journal, ignore_errors=True)


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes: the parent's children started by multiprocessing's
    spawn (its resource tracker, if any, is not a worker)."""
    children: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(p) for p in (task / "children").read_text().split()]
    workers = []
    for pid in children:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline or b"multiprocessing-fork" in cmdline:
            workers.append(pid)
    return sorted(workers)


def established_connections(pid: int, port: int) -> int:
    """TCP connections in state ESTABLISHED on local `port` held open by process `pid`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


# --- Load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request to make: `kind` is execute, chat or stream."""

    kind: str
    session: str
    json: dict
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    call: Call
    started: float  # seconds since the load began
    ended: float = 0.0
    status: int | None = None
    operation_id: str | None = None
    error: str | None = None  # the client's exception, when no complete answer came
    error_code: str | None = None  # our machine code, from the body
    stream_end: str | None = None  # streams answered 200: "done", "error" or "cut"
    content: str | None = None
    message: str | None = None  # an error's message (gateway: "<param> <message>")


def operation_id_of(kind: str, response: httpx.Response, body: dict | None) -> str | None:
    header = response.headers.get("x-aura-operation-id")
    if header:
        return header
    if kind == "execute" and isinstance(body, dict):
        return body.get("operation_id")
    if isinstance(body, dict) and str(body.get("id", "")).startswith("chatcmpl-"):
        return str(uuid.UUID(body["id"].removeprefix("chatcmpl-")))
    return None


def _error_of(kind: str, body: object) -> tuple[str | None, str | None]:
    """(code, message) of an error body: ours for execute, OpenAI's for the gateway (the
    message then starts with the `param` it names)."""
    if not isinstance(body, dict):
        return None, None
    if kind == "execute":
        return body.get("error_code"), body.get("error_message")
    error = body.get("error")
    if not isinstance(error, dict):
        return None, None
    return error.get("code"), f"{error.get('param')} {error.get('message')}"


async def send(client: httpx.AsyncClient, call: Call, t0: float) -> Outcome:
    """Make one call; never raises (the exception is recorded)."""
    outcome = Outcome(call=call, started=time.monotonic() - t0)
    path = EXECUTE if call.kind == "execute" else CHAT
    try:
        if call.kind == "stream":
            await _stream(client, path, call, outcome)
        else:
            response = await client.post(path, json=call.json, headers=call.headers)
            outcome.status = response.status_code
            try:
                body = response.json()
            except ValueError:
                body = None
            outcome.operation_id = operation_id_of(call.kind, response, body)
            outcome.error_code, outcome.message = _error_of(call.kind, body)
            if isinstance(body, dict):
                if call.kind == "execute":
                    outcome.content = body.get("content")
                elif body.get("choices"):
                    outcome.content = body["choices"][0]["message"]["content"]
    except (httpx.HTTPError, OSError) as exc:
        outcome.error = type(exc).__name__
    outcome.ended = time.monotonic() - t0
    return outcome


async def _stream(client: httpx.AsyncClient, path: str, call: Call, outcome: Outcome) -> None:
    async with client.stream("POST", path, json=call.json, headers=call.headers) as response:
        outcome.status = response.status_code
        outcome.operation_id = response.headers.get("x-aura-operation-id")
        if response.status_code != 200:
            body = await response.aread()
            with contextlib.suppress(ValueError):
                outcome.error_code, outcome.message = _error_of("stream", json.loads(body))
            return
        last: str | None = None
        parts: list[str] = []
        outcome.stream_end = "cut"
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            last = line[6:]
            if last == "[DONE]":
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(last)
                if "error" in event:
                    outcome.error_code, outcome.message = _error_of("stream", event)
                for choice in event.get("choices") or []:
                    parts.append((choice.get("delta") or {}).get("content") or "")
        outcome.content = "".join(parts)
        if last == "[DONE]":
            outcome.stream_end = "done"
        elif last is not None and outcome.error_code is not None:
            outcome.stream_end = "error"


def client_for(url: str, raw_key: str, *, timeout: float, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {raw_key}"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def run_load(
    url: str,
    raw_key: str,
    *,
    make: Callable[[int, int], Call],
    duration: float,
    concurrency: int,
    client_timeout: float = 15,
    during: Callable[[float], Awaitable[None]] | None = None,
) -> list[Outcome]:
    """`concurrency` callers, each making calls back to back until `duration` has passed
    (`make(caller, n)`: caller is 0..concurrency-1, n counts every call); `during(t0)`
    runs alongside (the chaos)."""
    outcomes: list[Outcome] = []
    counter = iter(range(10**9))
    async with client_for(url, raw_key, timeout=client_timeout, connections=concurrency) as client:
        t0 = time.monotonic()

        async def caller(index: int) -> None:
            while time.monotonic() - t0 < duration:
                outcome = await send(client, make(index, next(counter)), t0)
                outcomes.append(outcome)
                if outcome.error:
                    await asyncio.sleep(0.05)  # a refused connection must not spin

        chaos = asyncio.ensure_future(during(t0)) if during else None
        await asyncio.gather(*[caller(index) for index in range(concurrency)])
        if chaos is not None:
            await chaos
    return outcomes


async def fire(
    url: str, raw_key: str, calls: list[Call], *, client_timeout: float = 60
) -> list[Outcome]:
    """Every call at once."""
    async with client_for(url, raw_key, timeout=client_timeout, connections=len(calls)) as client:
        t0 = time.monotonic()
        return list(await asyncio.gather(*[send(client, call, t0) for call in calls]))


# --- Invariants, from the database -----------------------------------------------------------


def micros(amount: Decimal | None) -> int:
    return int((amount or Decimal(0)) * 1_000_000)


@dataclass
class Ledgers:
    """Every session's ledger next to the sums of its telemetry rows."""

    sessions: list[LlmSession]
    row_tokens: dict[str, int]
    row_cost: dict[str, int]
    row_count: dict[str, int]
    rows: int
    reservations: int

    @classmethod
    def read(cls) -> Ledgers:
        sums = OperationTelemetry.objects.values("project_id", "session_id").annotate(
            tin=Sum("tokens_in"), tout=Sum("tokens_out"), cost=Sum("estimated_cost")
        )
        tokens, cost, count = {}, {}, Counter()
        for s in sums:
            key = f"{s['project_id']}:{s['session_id']}"
            tokens[key] = (s["tin"] or 0) + (s["tout"] or 0)
            cost[key] = micros(s["cost"])
        for project_id, session_id in OperationTelemetry.objects.values_list(
            "project_id", "session_id"
        ):
            count[f"{project_id}:{session_id}"] += 1
        return cls(
            sessions=list(LlmSession.objects.order_by("session_id")),
            row_tokens=tokens,
            row_cost=cost,
            row_count=dict(count),
            rows=OperationTelemetry.objects.count(),
            reservations=BudgetReservation.objects.count(),
        )

    def key(self, session: LlmSession) -> str:
        return f"{session.project_id}:{session.session_id}"

    def overspend(self) -> tuple[int, int]:
        """(tokens, micro-dollars): the worst overrun of a hard session cap, 0 if none."""
        tokens = cost = 0
        for s in self.sessions:
            if not s.enforce_hard_limits:
                continue
            if s.max_tokens_per_session is not None:
                tokens = max(tokens, s.tokens_used - s.max_tokens_per_session)
            if s.max_cost_per_session_micros is not None:
                cost = max(cost, s.cost_accrued_micros - s.max_cost_per_session_micros)
        return tokens, cost

    def caps_violations(self) -> list[str]:
        problems = []
        for s in self.sessions:
            if not s.enforce_hard_limits:
                continue
            if s.max_tokens_per_session is not None and s.tokens_used > s.max_tokens_per_session:
                problems.append(
                    f"{s.session_id!r}: tokens_used {s.tokens_used} > cap "
                    f"{s.max_tokens_per_session}"
                )
            cap = s.max_cost_per_session_micros
            if cap is not None and s.cost_accrued_micros > cap:
                problems.append(f"{s.session_id!r}: cost {s.cost_accrued_micros} > cap {cap} µ$")
        return problems

    def ledger_violations(self) -> list[str]:
        problems = []
        known = set()
        for s in self.sessions:
            key = self.key(s)
            known.add(key)
            tokens, cost = self.row_tokens.get(key, 0), self.row_cost.get(key, 0)
            if (s.tokens_used, s.cost_accrued_micros) != (tokens, cost):
                problems.append(
                    f"{s.session_id!r}: ledger {s.tokens_used} tokens / {s.cost_accrued_micros} µ$"
                    f" but telemetry sums {tokens} tokens / {cost} µ$"
                )
        for key, tokens in self.row_tokens.items():
            if key not in known and (tokens or self.row_cost.get(key)):
                problems.append(f"{key}: telemetry charges {tokens} tokens to no ledger")
        return problems

    def reserved_violations(self) -> list[str]:
        problems = []
        if self.reservations:
            problems.append(f"{self.reservations} BudgetReservation row(s) left")
        for s in self.sessions:
            if s.tokens_reserved or s.cost_reserved_micros:
                problems.append(
                    f"{s.session_id!r}: {s.tokens_reserved} tokens / "
                    f"{s.cost_reserved_micros} µ$ still reserved"
                )
        return problems


def row_violations(outcomes: list[Outcome], *, statuses: Iterable[int] | None = None) -> list[str]:
    """Every answered operation id (of the given statuses; all when None) has exactly one
    telemetry row."""
    wanted = [
        o.operation_id
        for o in outcomes
        if o.operation_id and (statuses is None or o.status in set(statuses))
    ]
    counts = Counter(
        str(op)
        for op in OperationTelemetry.objects.filter(operation_id__in=wanted).values_list(
            "operation_id", flat=True
        )
    )
    missing = [op for op in wanted if counts[str(op)] == 0]
    doubled = [op for op, n in counts.items() if n > 1]
    problems = []
    if missing:
        by_status = Counter(o.status for o in outcomes if o.operation_id in set(missing))
        problems.append(
            f"{len(missing)} of {len(wanted)} answered operations have no telemetry row "
            f"(by status {dict(by_status)}; e.g. {missing[:3]})"
        )
    if doubled:
        problems.append(f"{len(doubled)} operation ids have several rows: {doubled[:3]}")
    return problems


def settle(check: Callable[[], list[str]], *, timeout: float, interval: float = 0.25) -> list[str]:
    """Poll `check` until it reports nothing or `timeout` passes; its last report."""
    deadline = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(interval)


def release_expired_in_thread() -> int:
    """The expiry job with the real clock, from any thread (closes its connection)."""
    from budgets.services import budget_release_expired

    try:
        return budget_release_expired()
    finally:
        connections.close_all()


def statuses(outcomes: list[Outcome]) -> Counter:
    return Counter(o.status if o.status is not None else f"exc:{o.error}" for o in outcomes)


def invariants(
    server: ChaosServer, *, caps: str | None = None
) -> dict[str, Callable[[], list[str]]]:
    """The checks every chaos test ends with, read afresh at each poll: ledger = Σ
    telemetry, nothing left reserved, the journal replayed, and (labelled `caps`) used
    within every hard cap."""
    checks: dict[str, Callable[[], list[str]]] = {}
    if caps is not None:
        checks[caps] = lambda: Ledgers.read().caps_violations()
    checks["c:ledger=telemetry"] = lambda: Ledgers.read().ledger_violations()
    checks["e:nothing_reserved"] = lambda: Ledgers.read().reserved_violations()
    checks["journal_replayed"] = server.journal_violations
    return checks


@dataclass
class Verdict:
    """The invariants of one test: each named check and what it found."""

    name: str
    outcomes: list[Outcome]
    problems: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)

    def check(self, label: str, problems: list[str]) -> None:
        self.problems[label] = list(problems)

    def settle_and_check(
        self, checks: dict[str, Callable[[], list[str]]], *, timeout: float
    ) -> float:
        """Poll every check until all report nothing or `timeout` passes (the pipeline
        may still be writing); record each one's last report. Seconds it took."""
        started = time.monotonic()
        settle(lambda: [p for check in checks.values() for p in check()], timeout=timeout)
        for label, check in checks.items():
            self.check(label, check())
        return round(time.monotonic() - started, 2)

    def summary(self, ledgers: Ledgers | None = None) -> str:
        ledgers = ledgers or Ledgers.read()
        counts = statuses(self.outcomes)
        over_tokens, over_cost = ledgers.overspend()
        parts = [
            f"{self.name}:",
            f"requests={len(self.outcomes)}",
            f"200={counts.get(200, 0)}",
            "other={"
            + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str) if k != 200)
            + "}",
            f"telemetry_rows={ledgers.rows}",
            f"charged_ops={sum(s.operation_count for s in ledgers.sessions)}",
            f"worst_overspend={over_tokens} tokens/{over_cost} µ$",
        ]
        parts += [f"{k}={v}" for k, v in self.figures.items()]
        failed = [k for k, v in self.problems.items() if v]
        parts.append("FAILED=" + ",".join(failed) if failed else "invariants=ok")
        return " ".join(parts)

    def report(self) -> None:
        """Print and append the summary line (and write every outcome to
        var/chaos-<test>.json), then fail with every broken invariant."""
        line = self.summary()
        print("\n" + line)
        SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
        with SUMMARY_PATH.open("a") as summary:
            summary.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        timeline = [
            {
                "kind": o.call.kind,
                "session": o.call.session,
                "started": round(o.started, 3),
                "ended": round(o.ended, 3),
                "status": o.status,
                "error": o.error,
                "error_code": o.error_code,
                "stream_end": o.stream_end,
                "operation_id": o.operation_id,
            }
            for o in sorted(self.outcomes, key=lambda o: o.started)
        ]
        outcomes_path = SUMMARY_PATH.parent / f"chaos-{self.name}.json"
        outcomes_path.write_text(json.dumps({"figures": self.figures, "outcomes": timeline}))
        broken = {k: v for k, v in self.problems.items() if v}
        assert not broken, "\n".join(
            f"[{label}] " + "; ".join(problems) for label, problems in broken.items()
        )
