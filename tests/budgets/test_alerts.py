"""Budget alerts (budgets/alerts.py): each threshold of a period told once, to a real
webhook receiver on 127.0.0.1 that checks every signature, and to e-mail; retries on the
django-q2 schedule; the console's endpoints keep their secret to themselves."""

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.db import connections
from django.utils import timezone
from django_q.models import Schedule
from django_q.scheduler import scheduler

from budgets import alerts, periods
from budgets.alerts import check_thresholds, notice, send_test_alert
from budgets.spend_models import (
    AlertDelivery,
    AlertEndpoint,
    BudgetAlert,
    Scope,
    SpendBudget,
    SpendPeriod,
    SpendShard,
)
from telemetry.tasks import budget_alerts_job

SECRET = "whsec-0123456789abcdef-SECRET"


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    signed: bool

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: answers each POST with the next scripted status (then
    `default`) and checks its signature with `secret`."""

    secret: str
    script: list[int] = field(default_factory=list)
    default: int = 200
    hits: list[Hit] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver():
    state = Receiver(secret=SECRET)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(state.secret.encode(), body, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(self.headers.get("X-Aura-Signature", ""), expected)
            state.hits.append(Hit(headers=dict(self.headers), body=body, signed=signed))
            status = state.script.pop(0) if state.script else state.default
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_port}/hooks/aura"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def endpoint(project, receiver):
    return AlertEndpoint.objects.create(project=project, url=receiver.url, secret=SECRET)


def make_budget(project, **fields) -> SpendBudget:
    values = {
        "project": project,
        "scope": Scope.PROJECT,
        "period": "month",
        "max_cost": Decimal("1.000000"),
        "thresholds": "50,80",
        **fields,
    }
    return SpendBudget.objects.create(**values)


def current_start(budget: SpendBudget) -> datetime:
    return periods.window(budget.period, time_zone=budget.project.time_zone, now=periods.now())[0]


def spend(
    budget: SpendBudget,
    *,
    cost_micros: int = 0,
    tokens: int = 0,
    reserved_micros: int = 0,
    subject: str = "",
    start: datetime | None = None,
    shard: int = 0,
) -> tuple[int, str, datetime]:
    """Charge a shard of the budget's period (as a settled request would)."""
    start = start or current_start(budget)
    SpendPeriod.objects.get_or_create(
        budget=budget,
        subject=subject,
        period_start=start,
        defaults={"max_tokens": budget.max_tokens, "max_cost_micros": budget.max_cost_micros},
    )
    row, _ = SpendShard.objects.get_or_create(
        budget=budget, subject=subject, period_start=start, shard=shard
    )
    row.tokens_used += tokens
    row.cost_accrued_micros += cost_micros
    row.cost_reserved_micros += reserved_micros
    row.save()
    return (budget.pk, subject, start)


def retry_schedules() -> list[Schedule]:
    return list(Schedule.objects.filter(func=alerts.DELIVER_TASK).order_by("pk"))


def run_due_retries() -> int:
    """Make every retry due now and let django-q2's scheduler run it (tasks run inline:
    tests/settings.py). Returns how many were due."""
    due = Schedule.objects.filter(func=alerts.DELIVER_TASK)
    count = due.update(next_run=timezone.now() - timedelta(seconds=1))
    scheduler()
    return count


# --- exactly once -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_each_threshold_is_delivered_once_with_a_valid_signature(project, endpoint, receiver):
    budget = make_budget(project)
    key = spend(budget, cost_micros=300_000, reserved_micros=600_000)
    assert check_thresholds(keys=[key]) == 0  # 30 % used: reserved amounts do not count
    assert receiver.hits == []

    spend(budget, cost_micros=300_000, shard=3)  # 60 % over two shards
    assert check_thresholds(keys=[key]) == 1
    assert check_thresholds(keys=[key, key]) == 0

    spend(budget, cost_micros=250_000, shard=5)  # 85 %: two checkers at once
    barrier = threading.Barrier(2)
    created: list[int] = []

    def checker() -> None:
        try:
            barrier.wait()
            created.append(check_thresholds(keys=[key]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=checker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(created) == [0, 1]
    assert check_thresholds(keys=[key]) == 0

    assert [h.payload["threshold"] for h in receiver.hits] == [50, 80]
    assert all(h.signed for h in receiver.hits)
    assert {h.headers["Content-Type"] for h in receiver.hits} == {"application/json"}
    deliveries = {d.pk: d for d in AlertDelivery.objects.all()}
    assert sorted(int(h.headers["X-Aura-Delivery"]) for h in receiver.hits) == sorted(deliveries)
    assert {(d.status, d.attempts, d.last_status_code) for d in deliveries.values()} == {
        ("delivered", 1, 200)
    }
    start, resets = periods.window("month", time_zone="UTC", now=periods.now())
    first = receiver.hits[0].payload
    alert = BudgetAlert.objects.get(threshold=50)
    assert first == {
        "type": "budget.threshold_crossed",
        "alert_id": alert.pk,
        "project": "studio",
        "scope": "project:studio",
        "period": "month",
        "period_start": start.isoformat(),
        "resets_at": resets.isoformat(),
        "threshold": 50,
        "unit": "cost",
        "used": "0.600000",
        "cap": "1.000000",
        "hard": True,
        "created_at": alert.created_at.isoformat(),
    }
    assert receiver.hits[1].payload["used"] == "0.850000"


def test_a_checker_that_loses_the_insert_race_tells_nothing(
    project, endpoint, receiver, monkeypatch
):
    """Another process creates the alert between this checker's read and its insert: the
    unique constraint refuses the insert, and this checker creates no delivery."""
    budget = make_budget(project, thresholds="50")
    key = spend(budget, cost_micros=500_000)
    real = alerts._unit_crossing

    def then_another_process_wins(budget, **amounts):
        BudgetAlert.objects.create(
            budget=budget, period_start=key[2], threshold=50, unit="cost", used=1, cap=2
        )
        return real(budget, **amounts)

    monkeypatch.setattr(alerts, "_unit_crossing", then_another_process_wins)
    assert check_thresholds(keys=[key]) == 0
    assert receiver.hits == [] and not AlertDelivery.objects.exists()
    assert BudgetAlert.objects.get().used == 1  # the winner's row, untouched


def test_an_inactive_endpoint_gets_nothing_and_an_inactive_budget_alerts_nothing(
    project, endpoint, receiver
):
    AlertEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    budget = make_budget(project)
    key = spend(budget, cost_micros=900_000)
    assert check_thresholds(keys=[key]) == 2
    assert receiver.hits == [] and not AlertDelivery.objects.exists()

    quiet = make_budget(project, active=False)
    assert check_thresholds(keys=[spend(quiet, cost_micros=900_000)]) == 0


# --- retries ----------------------------------------------------------------------------


def test_a_failing_receiver_gets_the_third_attempt_after_backoff(
    project, endpoint, receiver, settings
):
    settings.AURA = {**settings.AURA, "ALERT_ATTEMPTS": 5, "ALERT_BACKOFF_SECONDS": 30.0}
    receiver.script = [500, 500]
    budget = make_budget(project, thresholds="50")
    assert check_thresholds(keys=[spend(budget, cost_micros=500_000)]) == 1

    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500"
    (retry,) = retry_schedules()
    assert retry.schedule_type == Schedule.ONCE and retry.args == repr((delivery.pk,))
    pause = (retry.next_run - timezone.now()).total_seconds()
    assert 25 < pause <= 30  # ALERT_BACKOFF_SECONDS * 2**0

    assert run_due_retries() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    (retry,) = retry_schedules()  # the first one ran and is gone
    pause = (retry.next_run - timezone.now()).total_seconds()
    assert 55 < pause <= 60  # doubled

    assert run_due_retries() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "delivered",
        3,
        200,
    )
    assert delivery.last_error == "" and delivery.delivered_at is not None
    assert retry_schedules() == []
    assert len(receiver.hits) == 3
    assert all(h.signed for h in receiver.hits)
    assert len({h.body for h in receiver.hits}) == 1  # the same alert, byte for byte
    assert {h.headers["X-Aura-Delivery"] for h in receiver.hits} == {str(delivery.pk)}


def test_an_endpoint_always_failing_ends_failed_after_the_attempts(
    project, endpoint, receiver, settings
):
    settings.AURA = {**settings.AURA, "ALERT_ATTEMPTS": 3, "ALERT_BACKOFF_SECONDS": 1.0}
    receiver.default = 503
    closed = AlertEndpoint.objects.create(
        project=project, url="http://127.0.0.1:9/nothing-listens", secret=SECRET
    )
    budget = make_budget(project, thresholds="80")
    assert check_thresholds(keys=[spend(budget, cost_micros=800_000)]) == 1
    assert run_due_retries() == 2
    assert run_due_retries() == 2
    assert run_due_retries() == 0  # no fourth attempt is scheduled

    served = AlertDelivery.objects.get(endpoint=endpoint)
    assert (served.status, served.attempts, served.last_status_code) == ("failed", 3, 503)
    refused = AlertDelivery.objects.get(endpoint=closed)
    assert (refused.status, refused.attempts, refused.last_status_code) == ("failed", 3, None)
    assert refused.last_error.startswith("ConnectError")
    assert len(receiver.hits) == 3
    # A stray task for a settled delivery sends nothing more.
    assert alerts.alert_deliver(served.pk) == "skipped"
    assert len(receiver.hits) == 3


def test_a_delivery_never_queued_is_resumed_by_the_job(project, endpoint, receiver, monkeypatch):
    """The process that created the alert died before queueing its delivery: the job
    sends it, once, after a while (not before: its task may only be late)."""
    monkeypatch.setattr(alerts, "_enqueue", lambda delivery_id: None)
    budget = make_budget(project, thresholds="50", period="day")
    assert check_thresholds(keys=[spend(budget, cost_micros=500_000)]) == 1
    monkeypatch.undo()
    assert budget_alerts_job() == 0 and receiver.hits == []  # too recent to resume
    AlertDelivery.objects.update(created_at=timezone.now() - timedelta(minutes=6))
    budget_alerts_job()
    budget_alerts_job()
    assert len(receiver.hits) == 1 and receiver.hits[0].signed
    assert AlertDelivery.objects.get().status == "delivered"


# --- e-mail, soft budgets, end users, periods ---------------------------------------------


def test_e_mail_goes_out_once_per_threshold_and_address(project):
    budget = make_budget(project, alert_emails="ops@example.com, cfo@example.com")
    key = spend(budget, cost_micros=550_000)
    assert check_thresholds(keys=[key]) == 1
    assert check_thresholds(keys=[key]) == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["cfo@example.com", "ops@example.com"]
    assert {m.subject for m in mail.outbox} == {
        "[Aura] project:studio at 50% of its month cost cap"
    }
    assert "$0.550000" in mail.outbox[0].body and "$1.000000" in mail.outbox[0].body

    spend(budget, cost_micros=300_000)
    assert check_thresholds(keys=[key]) == 1
    assert len(mail.outbox) == 4
    assert mail.outbox[-1].subject == "[Aura] project:studio at 80% of its month cost cap"
    assert set(AlertDelivery.objects.values_list("channel", "status", "attempts")) == {
        ("email", "delivered", 1)
    }


def test_a_soft_token_budget_alerts_too(project, endpoint, receiver):
    budget = make_budget(
        project, max_cost=None, max_tokens=1000, enforce_hard_limits=False, thresholds="80"
    )
    assert check_thresholds(keys=[spend(budget, tokens=900)]) == 1
    (hit,) = receiver.hits
    assert hit.signed
    assert {k: hit.payload[k] for k in ("unit", "used", "cap", "hard", "threshold")} == {
        "unit": "tokens",
        "used": 900,
        "cap": 1000,
        "hard": False,
        "threshold": 80,
    }


def test_the_fuller_cap_is_the_one_told_and_end_users_are_named(project, endpoint, receiver):
    budget = make_budget(
        project, scope=Scope.DEFAULT_END_USER, max_tokens=1000, thresholds="50"
    )  # cost cap $1 too: 90 % of tokens is fuller than 60 % of cost
    key = spend(budget, tokens=900, cost_micros=600_000, subject="u-42")
    assert check_thresholds(keys=[key]) == 1
    payload = receiver.hits[0].payload
    assert (payload["scope"], payload["unit"], payload["used"]) == ("end_user:u-42", "tokens", 900)


def test_a_new_period_alerts_again_and_the_job_checks_the_current_one(project, endpoint, receiver):
    budget = make_budget(project, period="day", thresholds="50")
    today = current_start(budget)
    yesterday = today - timedelta(days=1)
    assert check_thresholds(keys=[spend(budget, cost_micros=700_000, start=yesterday)]) == 1
    assert budget_alerts_job() == 0  # yesterday's period is not the current one

    spend(budget, cost_micros=200_000)
    assert budget_alerts_job() == 0  # 20 % today
    spend(budget, cost_micros=400_000, shard=1)
    assert budget_alerts_job() == 1
    assert budget_alerts_job() == 0
    assert [h.payload["period_start"] for h in receiver.hits] == [
        yesterday.isoformat(),
        today.isoformat(),
    ]
    assert all(h.signed for h in receiver.hits)


# --- the pipeline's notice ----------------------------------------------------------------


def test_notice_without_an_event_loop_checks_at_once(project, endpoint, receiver):
    budget = make_budget(project, thresholds="50")
    notice([spend(budget, cost_micros=500_000)])
    assert BudgetAlert.objects.count() == 1 and len(receiver.hits) == 1


@pytest.mark.django_db(transaction=True)
async def test_notice_coalesces_keys_and_checks_off_the_callers_path(
    project, endpoint, receiver, monkeypatch
):
    from asgiref.sync import sync_to_async

    budget = await sync_to_async(make_budget)(project, thresholds="50")
    key = await sync_to_async(spend)(budget, cost_micros=600_000)
    calls: list[list] = []
    real = alerts.check_thresholds

    def counted(*, keys):
        keys = list(keys)
        calls.append(keys)
        return real(keys=keys)

    monkeypatch.setattr(alerts, "check_thresholds", counted)
    for _ in range(5):
        notice([key])
    assert calls == []  # nothing on the caller's path
    await asyncio.sleep(alerts.NOTICE_DELAY_S + 1.0)
    assert calls == [[key]]
    assert await BudgetAlert.objects.acount() == 1
    assert len(receiver.hits) == 1 and receiver.hits[0].signed


# --- the console ----------------------------------------------------------------------------


def test_the_admin_action_sends_a_signed_test_alert(admin_client, endpoint, receiver):
    response = admin_client.post(
        "/admin/budgets/alertendpoint/",
        {"action": "send_test", "_selected_action": [endpoint.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Test alert delivered" in response.content.decode()
    (hit,) = receiver.hits
    assert hit.signed and hit.payload["type"] == "budget.test"
    assert set(hit.payload) == {
        "type",
        "alert_id",
        "project",
        "scope",
        "period",
        "period_start",
        "resets_at",
        "threshold",
        "unit",
        "used",
        "cap",
        "hard",
        "created_at",
    }
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.alert) == ("delivered", 1, None)


def test_a_test_alert_to_a_failing_endpoint_is_logged_failed_without_retry(endpoint, receiver):
    receiver.default = 500
    delivery = send_test_alert(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 500)
    assert retry_schedules() == []


def test_the_secret_is_never_shown_nor_logged(admin_client, project, receiver, settings):
    settings.AURA = {**settings.AURA, "ALERT_ATTEMPTS": 1}
    response = admin_client.post(
        "/admin/budgets/alertendpoint/add/",
        {"project": project.pk, "url": receiver.url, "active": "on", "new_secret": SECRET},
    )
    assert response.status_code == 302
    endpoint = AlertEndpoint.objects.get()
    assert endpoint.secret.reveal() == SECRET

    page = admin_client.get(f"/admin/budgets/alertendpoint/{endpoint.pk}/change/")
    html = page.content.decode()
    assert SECRET not in html and "…CRET" in html

    # Changing it (and the URL) leaves the history naming the change, not the value.
    new = "whsec-rotated-0000000000000-NEWS"
    response = admin_client.post(
        f"/admin/budgets/alertendpoint/{endpoint.pk}/change/",
        {"project": project.pk, "url": receiver.url + "?v=2", "active": "on", "new_secret": new},
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret.reveal() == new
    messages = " ".join(e.change_message for e in LogEntry.objects.all())
    assert "secret: replaced" in messages
    assert SECRET not in messages and new not in messages
    history = admin_client.get(f"/admin/budgets/alertendpoint/{endpoint.pk}/history/")
    assert new not in history.content.decode()

    # An empty secret field keeps the current one.
    admin_client.post(
        f"/admin/budgets/alertendpoint/{endpoint.pk}/change/",
        {"project": project.pk, "url": receiver.url, "active": "on", "new_secret": ""},
    )
    endpoint.refresh_from_db()
    assert endpoint.secret.reveal() == new

    receiver.secret, receiver.default = new, 500
    budget = make_budget(project, thresholds="50")
    check_thresholds(keys=[spend(budget, cost_micros=500_000)])
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "failed" and receiver.hits[0].signed
    for url in (
        "/admin/budgets/alertdelivery/",
        f"/admin/budgets/alertdelivery/{delivery.pk}/change/",
        "/admin/budgets/budgetalert/",
    ):
        body = admin_client.get(url).content.decode()
        assert new not in body and SECRET not in body, url
    assert "$0.500000" in admin_client.get("/admin/budgets/budgetalert/").content.decode()
    assert new not in json.dumps(delivery.payload) and new not in delivery.last_error
