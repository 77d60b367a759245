from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "aura_orchestrator.tenancy"
    label = "tenancy"
    verbose_name = "Projects and API keys"

    def ready(self) -> None:
        from aura_orchestrator.caching import config_cache
        from aura_orchestrator.catalog.models import LlmModel, Provider
        from aura_orchestrator.tenancy import schema  # noqa: F401  (registers the extension)
        from aura_orchestrator.tenancy.models import ApiKey, Project
        from budgets.models import BudgetConstraint, RateLimit, SpendBudget
        from presets.models import OperationPreset

        # Every process (web, admin, commands, jobs) invalidates the hot-path memos of
        # keys, presets, routes and named budgets when it changes one of these.
        config_cache.connect(
            ApiKey,
            Project,
            OperationPreset,
            Provider,
            LlmModel,
            BudgetConstraint,
            SpendBudget,
            RateLimit,
        )
