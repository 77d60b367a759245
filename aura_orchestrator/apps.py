from django.apps import AppConfig


class AuraConfig(AppConfig):
    """The orchestration core: commands (serve, demo, statistics) and system checks."""

    name = "aura_orchestrator"
    label = "aura"
    verbose_name = "Aura Orchestrator"

    def ready(self) -> None:
        from aura_orchestrator import checks  # noqa: F401  (registers the checks)
