from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "aura_orchestrator.tenancy"
    label = "tenancy"
    verbose_name = "Projects and API keys"

    def ready(self) -> None:
        from aura_orchestrator.tenancy import schema  # noqa: F401  (registers the extension)
