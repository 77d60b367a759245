"""Background jobs run by django-q2, and the schedules that run them.

Each job calls services and returns a count (kept as the task's result in the admin).
Jobs are idempotent, so a retry after a timeout (Q_CLUSTER: `retry` > `timeout`,
bounded `max_attempts`) repeats no work twice.
"""

from aura_orchestrator.caching.services import cache_purge_expired
from aura_orchestrator.store.journal import replay_orphans
from budgets.alerts import alert_deliveries_resume, check_thresholds, periods_to_check
from budgets.services import budget_release_expired
from telemetry.services import telemetry_prune, telemetry_rollup_recent

_RELEASE_BATCH = 500
_RELEASE_MAX_BATCHES = 100


def cache_purge_expired_job() -> int:
    """Delete cache entries past their expiry."""
    return cache_purge_expired()


def telemetry_rollup_job(hours: int = 3) -> int:
    """Recompute the hourly rollups of the last `hours` hours (and any missed since)."""
    return telemetry_rollup_recent(hours=hours)


def budget_release_expired_job() -> int:
    """Hand the reservations of crashed workers back to their session ledgers, after
    replaying what dead workers of this machine journaled (their finishes settle those
    reservations: replayed first, they are charged, not handed back)."""
    replay_orphans()
    released = 0
    for _ in range(_RELEASE_MAX_BATCHES):
        count = budget_release_expired(batch_size=_RELEASE_BATCH)
        released += count
        if count < _RELEASE_BATCH:
            break
    return released


def budget_alerts_job(limit: int = 300) -> int:
    """Check the thresholds of the budget periods now running (a bounded batch, the next
    one each run; the pipeline's `notice` is the quick path, this is the sweep), and
    queue again deliveries that were never tried. Returns the alerts created."""
    alert_deliveries_resume()
    return check_thresholds(keys=periods_to_check(limit=limit))


def telemetry_prune_job() -> int:
    """Delete raw telemetry past the retention (rolled-up hours only; rollups stay)."""
    return telemetry_prune(time_budget_s=90)


# name → (function, schedule type, minutes, per-task options). Timeouts stay below
# Q_CLUSTER["retry"] (180 s) so a running task is never handed to a second worker.
SCHEDULES: dict[str, tuple[str, str, int | None, dict]] = {
    "Purge expired cache entries": (
        "telemetry.tasks.cache_purge_expired_job", "I", 5, {"timeout": 60}
    ),
    "Roll telemetry up into hourly buckets": (
        "telemetry.tasks.telemetry_rollup_job", "I", 5, {"timeout": 110}
    ),
    "Release expired budget reservations": (
        "telemetry.tasks.budget_release_expired_job", "I", 1, {"timeout": 60}
    ),
    "Alert on budget thresholds crossed": (
        "telemetry.tasks.budget_alerts_job", "I", 1, {"timeout": 50}
    ),
    "Prune raw telemetry past retention": (
        "telemetry.tasks.telemetry_prune_job", "H", None, {"timeout": 110}
    ),
}  # fmt: skip


def schedules_ensure(*, schedule_model=None, using: str = "default") -> int:
    """Create the missing schedules, by name (idempotent; an operator's edits to an
    existing schedule in the admin are kept). Returns how many were created."""
    if schedule_model is None:
        from django_q.models import Schedule

        schedule_model = Schedule
    created = 0
    for name, (func, schedule_type, minutes, options) in SCHEDULES.items():
        _, was_created = schedule_model.objects.using(using).get_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": schedule_type,
                "minutes": minutes,
                "repeats": -1,
                "kwargs": repr({"q_options": options}),
            },
        )
        created += was_created
    return created
