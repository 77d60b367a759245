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


@register()
def fast_front_matches_configuration(app_configs=None, **kwargs):
    """The fast front emulates a fixed middleware chain, DRF policies and two views; with
    any other configuration it serves nothing itself (aura_orchestrator/fastpath/guard.py)."""
    from django.conf import settings

    from aura_orchestrator.fastpath import guard

    if not settings.AURA.get("FAST_PATH", True):
        return []
    found = guard.differences()
    if not found:
        return []
    return [
        Warning(
            "The fast front is off: the configuration differs from what it emulates, so "
            "Django serves every request to /api/v1/operations/execute and "
            "/v1/chat/completions. Differences: " + "; ".join(found) + ".",
            hint="Bring the emulation in aura_orchestrator/fastpath/ up to date and pin the "
            "new configuration in fastpath/guard.py, or set AURA_FAST_PATH=0.",
            id="aura.W002",
        )
    ]
