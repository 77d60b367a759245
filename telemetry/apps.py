from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_schedules(sender, *, using, apps=None, **kwargs) -> None:
    """Background job schedules exist after every `migrate` (and test-database flush)."""
    from telemetry.tasks import schedules_ensure

    if apps is None:  # `flush` (e.g. after a transactional test) sends no `apps`
        from django.apps import apps

    try:
        schedule_model = apps.get_model("django_q", "Schedule")
    except LookupError:  # django_q not migrated in this plan
        return
    schedules_ensure(schedule_model=schedule_model, using=using)


class TelemetryConfig(AppConfig):
    name = "telemetry"
    verbose_name = "Telemetry"

    def ready(self) -> None:
        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="telemetry_schedules")
