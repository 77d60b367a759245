"""System checks: bad configuration is reported at start-up, not at the first request."""

import os

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError


@register(Tags.database, deploy=False)
def provider_secrets_present(app_configs=None, **kwargs):
    """A provider that names an environment variable that is not set cannot authenticate."""
    from aura_orchestrator.catalog.models import Provider

    try:
        providers = list(Provider.objects.filter(enabled=True).exclude(api_key_env=""))
    except DatabaseError:  # not migrated yet
        return []
    return [
        Warning(
            f"Provider '{p.name}' reads its API key from ${p.api_key_env}, which is not set.",
            hint=f"export {p.api_key_env}=… before starting the server.",
            obj=p,
            id="aura.W001",
        )
        for p in providers
        if not os.environ.get(p.api_key_env)
    ]
