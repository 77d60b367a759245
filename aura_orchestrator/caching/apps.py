from django.apps import AppConfig


class CachingConfig(AppConfig):
    name = "aura_orchestrator.caching"
    label = "caching"
    verbose_name = "Response cache"
