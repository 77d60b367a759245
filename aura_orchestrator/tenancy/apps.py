from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "aura_orchestrator.tenancy"
    label = "tenancy"
    verbose_name = "Projects and API keys"
