from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "aura_orchestrator.catalog"
    label = "catalog"
    verbose_name = "Providers and models"
