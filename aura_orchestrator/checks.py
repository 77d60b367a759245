"""System checks: bad configuration is reported at start-up, not at the first request."""

import os

from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError


@register(Tags.database, deploy=False)
def provider_secrets_present(app_configs=None, **kwargs):
    """A provider without a stored key that names an environment variable that is not set,
    or not allowed, cannot authenticate."""
    from aura_orchestrator.catalog.models import Provider
    from aura_orchestrator.catalog.secrets import env_refusal

    try:
        providers = list(Provider.objects.filter(enabled=True, api_key="").exclude(api_key_env=""))
    except DatabaseError:  # not migrated yet
        return []
    problems = []
    for p in providers:
        refusal = env_refusal(p.api_key_env)
        if refusal is not None:
            problems.append(
                Warning(
                    f"Provider '{p.name}': {refusal} Its calls are refused.",
                    hint="Store the key in the admin (or configure_provider --api-key-stdin), "
                    "or allow the variable with AURA_PROVIDER_SECRET_ENV.",
                    obj=p,
                    id="aura.W003",
                )
            )
        elif not os.environ.get(p.api_key_env):
            problems.append(
                Warning(
                    f"Provider '{p.name}' reads its API key from ${p.api_key_env}, "
                    "which is not set.",
                    hint=f"export {p.api_key_env}=… (or put it in .env) before starting the "
                    "server and the qcluster, or store the key in the admin.",
                    obj=p,
                    id="aura.W001",
                )
            )
    return problems


@register(Tags.security, deploy=True)
def encryption_keys_own(app_configs=None, **kwargs):
    """Production sets its own keys: the derived one changes with DJANGO_SECRET_KEY and
    leaves the stored secrets' safety to that one value."""
    from django.conf import settings

    if settings.ENCRYPTION_KEYS:
        return []
    return [
        Warning(
            "AURA_ENCRYPTION_KEYS is not set: provider API keys and webhook secrets are "
            "encrypted with a key derived from DJANGO_SECRET_KEY.",
            hint="In production set AURA_ENCRYPTION_KEYS to a key of your own (python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            "), then run `manage.py rotate_encryption_key` (the derived key still decrypts).",
            id="aura.W010",
        )
    ]


@register()
def encryption_keys_valid(app_configs=None, **kwargs):
    """Every key of AURA_ENCRYPTION_KEYS must be a Fernet key, or nothing can be stored."""
    from cryptography.fernet import Fernet
    from django.conf import settings

    problems = []
    for n, key in enumerate(settings.ENCRYPTION_KEYS, 1):
        try:
            Fernet(key.strip().encode())
        except ValueError:
            problems.append(
                Error(
                    f"AURA_ENCRYPTION_KEYS: key {n} is not a Fernet key (32 url-safe "
                    "base64-encoded bytes).",
                    id="aura.E010",
                )
            )
    return problems


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
