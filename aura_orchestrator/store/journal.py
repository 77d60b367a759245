"""The finishes a worker could not write, kept on disk until the database takes them.

An operation's finish (its charge, cache entry and telemetry row, one transaction) that
fails while the database is away must not lose the charge nor split it from its row. So
the whole `Finish` is appended to this worker's journal file (one JSON line, fsynced)
and the answer goes out; a task of the worker replays the journal as soon as the
database is back, each entry in one transaction that first checks whether the
operation's telemetry row already exists (a finish whose commit landed but whose reply
was lost is never applied twice).

Files: `<JOURNAL_DIR>/journal-<pid>-<token>.jsonl`. The owning process holds an exclusive
`flock` on its file for as long as it lives; a file nobody holds belongs to a dead
process (killed worker) and is replayed by whoever finds it: the next worker to start,
the reservation-expiry job, or `manage.py replay_journal`. An entry the database
refuses for another reason than its absence (a bug) is moved to `journal-failed.jsonl`
for an operator, never retried forever.
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import threading
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
from django.conf import settings
from django.db import transaction

from aura_orchestrator import metrics
from aura_orchestrator.caching.services import Answer, CachedAnswer
from aura_orchestrator.dbhealth import DATABASE_UNAVAILABLE
from aura_orchestrator.store.base import CacheWrite, Finish, Finished
from budgets.reserving import Reservation
from budgets.spending import SpendHoldRef

logger = logging.getLogger(__name__)

FAILED_NAME = "journal-failed.jsonl"
_REPLAY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # then every 5 s until the database is back


# --- one entry -------------------------------------------------------------------------


def encode(finish: Finish) -> bytes:
    r, c = finish.reservation, finish.cache
    doc = {
        "reservation": None
        if r is None
        else {
            "id": str(r.id),
            "session_pk": r.session_pk,
            "tokens": r.tokens,
            "cost": r.cost_micros,
            "spend": None if r.spend is None else r.spend.doc(),
        },
        "charge": finish.charge,
        "session_pk": finish.session_pk,
        "cache": None
        if c is None
        else {
            "project_id": c.project_id,
            "key_hash": c.key_hash,
            "operation_type": c.operation_type,
            "answer": dataclasses.asdict(c.answer)
            | {"answer": c.answer.answer.payload() if c.answer.answer else None},
            "ttl_seconds": c.ttl_seconds,
        },
        "telemetry": finish.telemetry,
        "release_unknown": finish.release_unknown,
    }
    return orjson.dumps(doc, default=_json_default) + b"\n"


def decode(line: bytes) -> Finish:
    doc = orjson.loads(line)
    r, c = doc["reservation"], doc["cache"]
    telemetry = doc["telemetry"]
    telemetry["operation_id"] = uuid.UUID(telemetry["operation_id"])
    telemetry["estimated_cost"] = Decimal(telemetry["estimated_cost"])
    # A line journaled before prompt caching was recorded has none of it.
    telemetry["cache_savings"] = Decimal(telemetry.get("cache_savings", 0))
    telemetry.setdefault("cache_read_tokens", 0)
    telemetry.setdefault("cache_write_tokens", 0)
    telemetry.setdefault("end_user", "")
    for name in ("started_at", "completed_at"):
        telemetry[name] = datetime.fromisoformat(telemetry[name])
    return Finish(
        reservation=None
        if r is None
        else Reservation(
            id=uuid.UUID(r["id"]),
            session_pk=r["session_pk"],
            tokens=r["tokens"],
            cost_micros=r["cost"],
            spend=SpendHoldRef.of_doc(r["spend"]) if r.get("spend") else None,
        ),
        charge=None if doc["charge"] is None else tuple(doc["charge"]),
        session_pk=doc["session_pk"],
        cache=None
        if c is None
        else CacheWrite(
            project_id=c["project_id"],
            key_hash=c["key_hash"],
            operation_type=c["operation_type"],
            answer=CachedAnswer(
                **c["answer"] | {"answer": Answer.of_payload(c["answer"].get("answer"))}
            ),
            ttl_seconds=c["ttl_seconds"],
        ),
        telemetry=telemetry,
        release_unknown=doc.get("release_unknown", False),
    )


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not serialisable in the journal: {type(value).__name__}")


# --- applying an entry (the same writes as the store's finish, at most once) --------------


def apply_once(finish: Finish) -> bool | None:
    """Write `finish` unless its telemetry row exists already: None if it did, else
    whether the charge was an overrun. One transaction; on PostgreSQL an advisory lock on
    the operation keeps two writers of the same finish apart."""
    from aura_orchestrator.store.locks import transaction_lock
    from aura_orchestrator.store.orm import finish_writes
    from telemetry.models import OperationTelemetry

    operation_id = finish.telemetry["operation_id"]
    with transaction.atomic():
        transaction_lock(key=str(operation_id))
        if OperationTelemetry.objects.filter(operation_id=operation_id).exists():
            return None
        return finish_writes(finish)


def finish_once(finish: Finish) -> Finished:
    """`apply_once`, then the ledger as it is now: how the pipeline tries a finish again,
    since its first try may have committed with the reply lost."""
    from budgets.selectors import ledger_get

    overrun = apply_once(finish)
    ledger = None if finish.session_pk is None else ledger_get(finish.session_pk)
    return Finished(ledger=ledger, budget_overrun=bool(overrun))


# --- this process's journal -----------------------------------------------------------


def journal_dir() -> Path:
    return Path(settings.AURA["JOURNAL_DIR"])


class Journal:
    """This process's file, its pending lines in memory, and the task that replays them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None
        self._pending: list[bytes] = []
        self._replaying: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child has its own file
            directory = journal_dir()
            directory.mkdir(parents=True, exist_ok=True)
            # The token: a later process given the same pid must never share a file.
            name = f"journal-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            fd = os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours while we live; released by the kernel on death
            self._fd, self._pid, self._pending = fd, os.getpid(), []
        return self._fd

    def _append_sync(self, line: bytes) -> None:
        with self._lock:
            fd = self._open()
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, line)
            os.fsync(fd)
            self._pending.append(line)

    async def append(self, finish: Finish) -> None:
        """Keep `finish` durably (raises if the disk refuses), and replay it soon."""
        line = encode(finish)
        await asyncio.to_thread(self._append_sync, line)
        metrics.JOURNALED_FINISHES.inc()
        logger.warning(
            "database unavailable: the finish of operation %s is journaled for replay",
            finish.telemetry["operation_id"],
        )
        self.replay_soon()

    def replay_soon(self) -> None:
        if self._replaying is None or self._replaying.done():
            self._replaying = asyncio.get_running_loop().create_task(self._replay_until_empty())

    async def _replay_until_empty(self) -> None:
        from aura_orchestrator.db import db

        attempt = 0
        while self._pending:
            await asyncio.sleep(_REPLAY_DELAYS[min(attempt, len(_REPLAY_DELAYS) - 1)])
            attempt += 1
            try:
                await db(self._replay_pending)
            except Exception:  # the database is still away: try again later
                logger.info("journal replay postponed", exc_info=True)

    def _replay_pending(self) -> None:
        with self._lock:
            batch = list(self._pending)
        done = _replay_lines(batch)
        with self._lock:
            self._pending = self._pending[done:]
            fd = self._open()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            if self._pending:
                os.write(fd, b"".join(self._pending))
            os.fsync(fd)


def _replay_lines(lines: list[bytes]) -> int:
    """Apply `lines` in order; how many were dealt with (applied, already there, or set
    aside as failed). Stops at the first one the database cannot take yet."""
    for done, line in enumerate(lines):
        try:
            finish = decode(line)
            apply_once(finish)
        except DATABASE_UNAVAILABLE:
            return done
        except Exception:
            logger.exception("a journaled finish was refused; kept in %s", FAILED_NAME)
            with (journal_dir() / FAILED_NAME).open("ab") as failed:
                failed.write(line)
    return len(lines)


def replay_orphans() -> int:
    """Replay the journals of processes that are gone (their lock is free). Synchronous,
    for jobs and commands; returns how many entries were applied or found applied."""
    directory = journal_dir()
    if not directory.is_dir():
        return 0
    total = 0
    for path in sorted(directory.glob("journal-[0-9]*.jsonl")):
        with contextlib.suppress(FileNotFoundError), path.open("r+b") as file:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process owns it and replays it itself
            lines = [line for line in file.read().splitlines(keepends=True) if line.strip()]
            done = _replay_lines(lines)
            total += done
            if done == len(lines):
                path.unlink()
            else:
                file.seek(0)
                file.truncate()
                file.write(b"".join(lines[done:]))
                file.flush()
                os.fsync(file.fileno())
    return total


_SWEEP_SECONDS = 30.0


def sweep_orphans_in_background(*, first_after: float = 1.0) -> threading.Thread:
    """For web workers: replay dead workers' journals soon after start (a killed worker's
    successor finds them) and every 30 s after, in a daemon thread."""

    def sweep() -> None:
        from django.db import close_old_connections

        delay = first_after
        while True:
            threading.Event().wait(delay)
            delay = _SWEEP_SECONDS
            try:
                replayed = replay_orphans()
                if replayed:
                    logger.warning("replayed %d finishes from dead workers' journals", replayed)
            except Exception:
                logger.info("sweeping orphan journals failed", exc_info=True)
            finally:
                close_old_connections()

    thread = threading.Thread(target=sweep, name="aura-journal-sweep", daemon=True)
    thread.start()
    return thread


journal = Journal()
