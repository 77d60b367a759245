"""Budget alerts: a threshold of a budget's cap crossed in a period, told once.

`check_thresholds` sums a period's shards (what was charged, never what is reserved) and
creates one `BudgetAlert` per crossed threshold. The table's unique constraint (budget,
subject, period start, threshold) decides who tells it: the insert runs in a savepoint,
and an IntegrityError means another checker, in this process or another, has it. The
winner creates its deliveries in the same savepoint (one per active webhook endpoint of
the project, one per address of the budget) and queues each with django-q2.

A delivery is one attempt at a time: `alert_deliver` claims the next attempt by a
conditional update of `attempts`, so two workers never send the same attempt; a failure
is retried with a ONCE schedule after ALERT_BACKOFF_SECONDS * 2**(attempts - 1), until
ALERT_ATTEMPTS. Webhook bodies are signed: `X-Aura-Signature: sha256=<hex HMAC-SHA256
of the exact body with the endpoint's secret>`.

`notice(keys)` is what the pipeline calls after a finish: it coalesces keys and checks
them at most once a second per process, off the request's path.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from aura_orchestrator.crypto import SecretUnreadable
from aura_orchestrator.money import micros_to_usd
from budgets import periods
from budgets.spend_models import (
    AlertDelivery,
    AlertEndpoint,
    BudgetAlert,
    SpendBudget,
    parse_thresholds,
)
from budgets.spending import Key, period_totals

log = logging.getLogger(__name__)


WEBHOOK_TIMEOUT_S = 10.0
DELIVER_TASK = "budgets.alerts.alert_deliver"
_ERROR_CHARS = 500  # AlertDelivery.last_error


# --- checking -------------------------------------------------------------------------------


def _usd(micros: int) -> str:
    return str(micros_to_usd(micros))


def _used_by_key(keys: list[Key]) -> dict[Key, tuple[int, int]]:
    """(tokens used, micro-dollars charged) of each key, summed over its shards."""
    return {key: (t.tokens_used, t.cost_micros) for key, t in period_totals(keys).items()}


def _crossed(used: int, cap: int | None, threshold: int) -> bool:
    # A zero cap is crossed by the first unit spent, not by nothing.
    return cap is not None and used > 0 and used * 100 >= threshold * cap


def _unit_crossing(
    budget: SpendBudget, *, tokens: int, cost: int, threshold: int
) -> tuple[str, int, int] | None:
    """(unit, used, cap) of the cap past `threshold` (the fuller one when both are),
    None when neither is."""
    cost_cap, token_cap = budget.max_cost_micros, budget.max_tokens
    by_cost = _crossed(cost, cost_cap, threshold)
    by_tokens = _crossed(tokens, token_cap, threshold)
    if by_cost and by_tokens:  # the fuller cap (shares compared without division)
        by_cost = cost * (token_cap or 0) >= tokens * (cost_cap or 0)
    if by_cost:
        return "cost", cost, cost_cap or 0
    if by_tokens:
        return "tokens", tokens, token_cap or 0
    return None


def _scope(budget: SpendBudget, subject: str) -> str:
    return f"end_user:{subject}" if subject else budget.scope_label


def alert_payload(alert: BudgetAlert, *, kind: str = "budget.threshold_crossed") -> dict[str, Any]:
    """The JSON every channel tells (the webhook's body, the e-mail's figures)."""
    budget = alert.budget
    _, resets = periods.window(
        budget.period, time_zone=budget.project.time_zone, now=alert.period_start
    )
    money = alert.unit == "cost"
    return {
        "type": kind,
        "alert_id": alert.pk,
        "project": budget.project.name,
        "scope": _scope(budget, alert.subject),
        "period": budget.period,
        "period_start": alert.period_start.isoformat(),
        "resets_at": None if resets is None else resets.isoformat(),
        "threshold": alert.threshold,
        "unit": alert.unit,
        "used": _usd(alert.used) if money else alert.used,
        "cap": _usd(alert.cap) if money else alert.cap,
        "hard": budget.enforce_hard_limits,
        "created_at": alert.created_at.isoformat(),
    }


def _emails(budget: SpendBudget) -> list[str]:
    return [a.strip() for a in budget.alert_emails.split(",") if a.strip()]


def _alert_create(
    budget: SpendBudget, *, key: Key, threshold: int, unit: str, used: int, cap: int
) -> list[int] | None:
    """The alert and its deliveries, in one savepoint: their ids, or None when another
    checker created this alert first (the unique constraint decides)."""
    _, subject, start = key
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                budget=budget,
                subject=subject,
                period_start=start,
                threshold=threshold,
                unit=unit,
                used=used,
                cap=cap,
            )
            payload = alert_payload(alert)
            rows = [
                AlertDelivery(
                    alert=alert,
                    endpoint=endpoint,
                    channel=AlertDelivery.Channel.WEBHOOK,
                    target=endpoint.url,
                    payload=payload,
                )
                for endpoint in AlertEndpoint.objects.filter(
                    project_id=budget.project_id, active=True
                )
            ]
            rows += [
                AlertDelivery(
                    alert=alert,
                    channel=AlertDelivery.Channel.EMAIL,
                    target=address,
                    payload=payload,
                )
                for address in _emails(budget)
            ]
            # One by one: bulk_create returns no primary keys on SQLite's older versions.
            for row in rows:
                row.save()
    except IntegrityError:
        return None
    return [row.pk for row in rows]


def _enqueue(delivery_id: int) -> None:
    from django_q.tasks import async_task

    async_task(DELIVER_TASK, delivery_id, task_name=f"alert-delivery-{delivery_id}")


def check_thresholds(*, keys: Iterable[Key]) -> int:
    """Create (and queue the deliveries of) every alert the keys' periods now call for.
    Call it outside a transaction: the deliveries are queued once their rows are
    committed. Returns how many alerts this call created."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return 0
    budgets = SpendBudget.objects.select_related("project", "api_key", "provider").in_bulk(
        {k[0] for k in keys}
    )
    used = _used_by_key(keys)
    told = set(
        BudgetAlert.objects.filter(
            budget_id__in=list(budgets), period_start__in={k[2] for k in keys}
        ).values_list("budget_id", "subject", "period_start", "threshold")
    )
    created = 0
    queued: list[int] = []
    for key in keys:
        budget = budgets.get(key[0])
        if budget is None or not budget.active or key not in used:
            continue
        tokens, cost = used[key]
        for threshold in parse_thresholds(budget.thresholds):
            if (*key, threshold) in told:
                continue
            crossing = _unit_crossing(budget, tokens=tokens, cost=cost, threshold=threshold)
            if crossing is None:
                break  # thresholds are sorted: the next ones are not crossed either
            unit, amount, cap = crossing
            ids = _alert_create(
                budget, key=key, threshold=threshold, unit=unit, used=amount, cap=cap
            )
            if ids is not None:
                created += 1
                queued += ids
    for delivery_id in queued:
        _enqueue(delivery_id)
    return created


def periods_to_check(*, limit: int = 300) -> list[Key]:
    """Keys of the periods now running of every active budget (at most `limit`, taken
    round-robin across calls through the cache, so every period is reached in turn)."""
    from django.core.cache import cache

    from budgets.spend_models import SpendPeriod

    now = periods.now()
    current: dict[int, datetime] = {}
    for budget_id, period, time_zone in SpendBudget.objects.filter(active=True).values_list(
        "pk", "period", "project__time_zone"
    ):
        current[budget_id] = periods.window(period, time_zone=time_zone, now=now)[0]
    if not current:
        return []
    condition = Q(pk__in=[])
    for budget_id, start in current.items():
        condition |= Q(budget_id=budget_id, period_start=start)
    cursor_key = "aura:budget-alerts:cursor"
    cursor = cache.get(cursor_key, 0)
    found = SpendPeriod.objects.filter(condition)
    rows = list(
        found.filter(pk__gt=cursor)
        .order_by("pk")
        .values_list("pk", "budget_id", "subject", "period_start")[:limit]
    )
    if len(rows) < limit:  # wrap around
        rows += list(
            found.filter(pk__lte=cursor)
            .order_by("pk")
            .values_list("pk", "budget_id", "subject", "period_start")[: limit - len(rows)]
        )
    if rows:
        cache.set(cursor_key, rows[-1][0] if len(rows) == limit else 0, timeout=None)
    return [(budget_id, subject, start) for _, budget_id, subject, start in rows]


# --- delivering ----------------------------------------------------------------------------


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact, keys sorted."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(body: bytes, *, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(delivery: AlertDelivery) -> tuple[int | None, str]:
    """One webhook attempt: (status code or None, error text or "")."""
    endpoint = delivery.endpoint
    if endpoint is None:
        return None, "endpoint deleted"
    body = body_of(delivery.payload)
    try:
        secret = endpoint.secret.reveal()  # decrypted here, where it signs
    except SecretUnreadable:
        return None, "the endpoint's secret cannot be decrypted (AURA_ENCRYPTION_KEYS)"
    headers = {
        "Content-Type": "application/json",
        "X-Aura-Signature": signature(body, secret=secret),
        "X-Aura-Delivery": str(delivery.pk),
        "User-Agent": "Aura-Alerts/1",
    }
    try:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
            response = client.post(delivery.target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}"


def _subject(payload: dict[str, Any]) -> str:
    period = "lifetime" if payload["period"] == "none" else payload["period"]
    prefix = "[Aura] test: " if payload["type"] == "budget.test" else "[Aura] "
    return (
        f"{prefix}{payload['scope']} at {payload['threshold']}% of its {period} "
        f"{payload['unit']} cap"
    )


def _mail_text(payload: dict[str, Any]) -> str:
    money = payload["unit"] == "cost"
    used = f"${payload['used']}" if money else f"{payload['used']} tokens"
    cap = f"${payload['cap']}" if money else f"{payload['cap']} tokens"
    kind = "hard (requests past it are refused)" if payload["hard"] else "soft (warning only)"
    return (
        f"Project {payload['project']}: {payload['scope']} has used {used} of its "
        f"{cap} {payload['period']} cap ({payload['threshold']}% threshold).\n"
        f"Period started {payload['period_start']}; resets {payload['resets_at'] or 'never'}.\n"
        f"The cap is {kind}.\n"
    )


def _mail(delivery: AlertDelivery) -> tuple[int | None, str]:
    payload = delivery.payload
    try:
        send_mail(
            _subject(payload),
            _mail_text(payload),
            settings.DEFAULT_FROM_EMAIL,
            [delivery.target],
            fail_silently=False,
        )
    except Exception as exc:  # any backend's failure is this attempt's failure
        return None, f"{type(exc).__name__}: {exc}"
    return None, ""


def _attempt(delivery: AlertDelivery) -> tuple[int | None, str]:
    if delivery.channel == AlertDelivery.Channel.WEBHOOK:
        return _post(delivery)
    return _mail(delivery)


def _record(delivery: AlertDelivery, *, status_code: int | None, error: str, retry: bool) -> None:
    """Log one attempt's outcome; schedule the next one when `retry` allows it."""
    delivery.last_status_code = status_code
    try:
        secret = delivery.endpoint.secret.reveal() if delivery.endpoint else ""
    except SecretUnreadable:
        secret = ""
    if secret and secret in error:  # a URL or a server may echo it back: never logged
        error = error.replace(secret, "…")
    delivery.last_error = error[:_ERROR_CHARS]
    if not error:
        delivery.status = AlertDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
    elif not retry or delivery.attempts >= settings.AURA["ALERT_ATTEMPTS"]:
        delivery.status = AlertDelivery.Status.FAILED
    from django_q.models import Schedule

    # The outcome and the next try together: a crash between them leaves no pending
    # delivery that nothing will ever try again.
    with transaction.atomic():
        delivery.save(update_fields=["status", "last_status_code", "last_error", "delivered_at"])
        if delivery.status != AlertDelivery.Status.PENDING:
            return
        pause = settings.AURA["ALERT_BACKOFF_SECONDS"] * 2 ** (delivery.attempts - 1)
        Schedule.objects.create(
            name=f"alert-delivery-{delivery.pk}-attempt-{delivery.attempts + 1}",
            func=DELIVER_TASK,
            args=repr((delivery.pk,)),
            schedule_type=Schedule.ONCE,
            repeats=-1,  # a ONCE schedule is deleted once run
            next_run=timezone.now() + timedelta(seconds=pause),
        )


def _claim(delivery_id: int) -> AlertDelivery | None:
    """The delivery with its next attempt counted, or None when it is settled or another
    worker claimed this attempt first."""
    delivery = AlertDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != AlertDelivery.Status.PENDING:
        return None
    seen = delivery.attempts
    if seen >= settings.AURA["ALERT_ATTEMPTS"]:
        return None
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status=AlertDelivery.Status.PENDING, attempts=seen
    ).update(attempts=seen + 1)
    if not claimed:
        return None
    delivery.attempts = seen + 1
    return delivery


def alert_deliveries_resume(*, older_than_s: float = 300, limit: int = 200) -> int:
    """Queue again the deliveries never attempted though created a while ago (the process
    that created them died before queueing them, or the queue lost them). Harmless if
    the first task is only late: whichever runs second finds the attempt claimed."""
    since = timezone.now() - timedelta(seconds=older_than_s)
    ids = list(
        AlertDelivery.objects.filter(
            status=AlertDelivery.Status.PENDING, attempts=0, created_at__lt=since
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    for delivery_id in ids:
        _enqueue(delivery_id)
    return len(ids)


def alert_deliver(delivery_id: int) -> str:
    """The django-q2 task: one attempt at one delivery. Returns its status."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return "skipped"
    status_code, error = _attempt(delivery)
    _record(delivery, status_code=status_code, error=error, retry=True)
    return str(delivery.status)


def send_test_alert(*, endpoint: AlertEndpoint) -> AlertDelivery:
    """POST a signed `budget.test` alert to the endpoint now (one attempt, no retry: the
    operator who asked sees its outcome) and return its log row."""
    project = endpoint.project
    now = timezone.now()
    start, resets = periods.window("month", time_zone=project.time_zone, now=periods.now())
    payload = {
        "type": "budget.test",
        "alert_id": None,
        "project": project.name,
        "scope": f"project:{project.name}",
        "period": "month",
        "period_start": start.isoformat(),
        "resets_at": None if resets is None else resets.isoformat(),
        "threshold": 80,
        "unit": "cost",
        "used": "80.000000",
        "cap": "100.000000",
        "hard": True,
        "created_at": now.isoformat(),
    }
    delivery = AlertDelivery.objects.create(
        endpoint=endpoint,
        channel=AlertDelivery.Channel.WEBHOOK,
        target=endpoint.url,
        payload=payload,
        attempts=1,
    )
    delivery.endpoint = endpoint
    status_code, error = _post(delivery)
    _record(delivery, status_code=status_code, error=error, retry=False)
    return delivery


# --- the pipeline's entry point ------------------------------------------------------------

NOTICE_DELAY_S = 1.0


@dataclass
class _Pending:
    """Keys noticed on one event loop since its last check, and the timer that checks."""

    keys: set[Key] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    running: set["asyncio.Task[None]"] = field(default_factory=set)


_pending: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pending]" = (
    weakref.WeakKeyDictionary()
)
_pending_lock = threading.Lock()


def notice(keys: Iterable[Key]) -> None:
    """Spend was charged on these periods: check their thresholds soon. On an event loop,
    keys are gathered for NOTICE_DELAY_S and checked together in db()'s threads (so each
    key is checked at most once a second per process, never on the request's path);
    without a running loop, checked now."""
    keys = list(keys)
    if not keys:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _check_logged(keys)
        return
    with _pending_lock:
        state = _pending.setdefault(loop, _Pending())
        state.keys.update(keys)
        if state.timer is None:
            state.timer = loop.call_later(NOTICE_DELAY_S, _flush, loop)


def _flush(loop: asyncio.AbstractEventLoop) -> None:
    with _pending_lock:
        state = _pending.get(loop)
        if state is None:
            return
        keys, state.keys, state.timer = list(state.keys), set(), None
    if keys:
        task = loop.create_task(_check_later(keys))
        state.running.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(state.running.discard)


async def _check_later(keys: list[Key]) -> None:
    from aura_orchestrator.db import db

    await db(_check_logged, keys)


def _check_logged(keys: list[Key]) -> None:
    try:
        check_thresholds(keys=keys)
    except Exception:  # an alert is never worth a failed request
        log.exception("budget alerts: checking %d period(s) failed", len(keys))
