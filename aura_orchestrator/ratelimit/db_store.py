"""The sliding windows in the database, for deployments without Redis (the embedded
default): the same answers as redis_store.py, one transaction per admission. The
windows of one call are locked in key order (store/locks.py: an advisory lock on
PostgreSQL; SQLite's IMMEDIATE transactions serialise writers already), so two workers
never both take the last place. Clocks: the workers' own (one machine, in practice).
"""

import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from aura_orchestrator.db import db
from aura_orchestrator.ratelimit.window import WINDOW_SECONDS, Check, Decision, Kind, Standing
from aura_orchestrator.store.locks import transaction_lock
from budgets.limit_models import RateEntry


class DbWindows:
    def __init__(self, *, window_seconds: float = WINDOW_SECONDS) -> None:
        self._window = timedelta(seconds=window_seconds)

    async def admit(
        self, checks: Sequence[Check], *, call_id: uuid.UUID, in_flight_seconds: float
    ) -> Decision:
        return await db(self._admit, checks, call_id, in_flight_seconds)

    async def end(
        self, checks: Sequence[Check], *, call_id: uuid.UUID, tokens_used: int | None
    ) -> None:
        await db(self._end, checks, call_id, tokens_used)

    @transaction.atomic
    def _admit(self, checks: Sequence[Check], call_id: uuid.UUID, seconds: float) -> Decision:
        now = timezone.now()
        for key in sorted({c.key for c in checks}):
            transaction_lock(key=f"aura-rate:{key}")
        used = [self._used(c, now) for c in checks]
        refused = next((i for i, c in enumerate(checks) if used[i] + c.cost > c.limit), None)
        if refused is None:
            expires = now + timedelta(seconds=seconds)
            RateEntry.objects.bulk_create(
                RateEntry(
                    key=c.key,
                    call_id=call_id,
                    at=now,
                    cost=c.cost,
                    expires_at=expires if c.kind is Kind.IN_FLIGHT else None,
                )
                for c in checks
            )
        standings = tuple(
            Standing(
                c,
                remaining=max(c.limit - used[i] - (c.cost if refused is None else 0), 0),
                reset_seconds=self._reset(c, now),
            )
            for i, c in enumerate(checks)
        )
        if refused is None:
            return Decision(admitted=True, standings=standings)
        check = checks[refused]
        return Decision(
            admitted=False,
            standings=standings,
            refused_by=check,
            retry_after_seconds=self._room_in(check, used[refused] + check.cost - check.limit, now),
        )

    def _used(self, check: Check, now) -> int:
        rows = RateEntry.objects.filter(key=check.key)
        if check.kind is Kind.IN_FLIGHT:
            rows.filter(expires_at__lte=now).delete()
            return rows.aggregate(n=Count("id"))["n"]
        rows.filter(at__lte=now - self._window).delete()
        return rows.aggregate(s=Sum("cost"))["s"] or 0

    def _reset(self, check: Check, now) -> float:
        if check.kind is Kind.IN_FLIGHT:
            return 0.0
        oldest = RateEntry.objects.filter(key=check.key).order_by("at").first()
        return 0.0 if oldest is None else (oldest.at + self._window - now).total_seconds()

    def _room_in(self, check: Check, need: int, now) -> float:
        """Seconds until `need` has left the window (a whole window: never)."""
        if check.cost > check.limit:
            return self._window.total_seconds()
        if check.kind is Kind.IN_FLIGHT:
            return 1.0
        freed = 0
        for at, cost in (
            RateEntry.objects.filter(key=check.key).order_by("at").values_list("at", "cost")
        ):
            freed += cost
            if freed >= need:
                return max((at + self._window - now).total_seconds(), 0.0)
        return 0.0

    @transaction.atomic
    def _end(self, checks: Sequence[Check], call_id: uuid.UUID, tokens_used: int | None) -> None:
        for check in checks:
            rows = RateEntry.objects.filter(key=check.key, call_id=call_id)
            if check.kind is Kind.IN_FLIGHT:
                rows.delete()
            elif check.kind is Kind.TOKENS and tokens_used is not None:
                rows.update(cost=tokens_used)
