"""Which environment variables a provider may take its API key from (`api_key_env`).

Only those an operator allowed (settings.PROVIDER_SECRET_ENV, AURA_PROVIDER_SECRET_ENV:
glob patterns, default `*_API_KEY`), and never one of our own settings (every variable
settings.py reads, and PROVIDER_SECRET_ENV_DENIED's patterns): whoever may edit a
provider must not be able to send DJANGO_SECRET_KEY or DATABASE_URL to a URL of their
choosing. Checked when a provider is saved (model validation, the admin,
configure_provider) and again at every call (a variable allowed then may not be now).
"""

import fnmatch
import os
import re

from django.conf import settings
from django.core.exceptions import ValidationError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_refusal(name: str) -> str | None:
    """Why a provider may not read its key from the variable `name`; None if it may."""
    if not _NAME.match(name):
        return f"{name!r} is not an environment variable name."
    upper = name.upper()
    denied = {*settings.SETTINGS_ENV_NAMES, *settings.PROVIDER_SECRET_ENV_DENIED}
    if any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in denied):
        return f"${name} holds this server's own configuration and cannot be a provider's key."
    allowed = [p.strip() for p in settings.PROVIDER_SECRET_ENV if p.strip()]
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
        return (
            f"${name} is not an allowed provider key variable: allowed are "
            f"{', '.join(allowed) or 'none'} (AURA_PROVIDER_SECRET_ENV)."
        )
    return None


def validate_api_key_env(name: str) -> None:
    """The model field's validator (forms, full_clean)."""
    if name:
        refusal = env_refusal(name)
        if refusal is not None:
            raise ValidationError(refusal, code="secret_env_refused")


def env_secret(name: str) -> str | None:
    """The allowed variable's value (None when unset); raises `ValueError` for a variable
    that is not allowed: the value is never read."""
    refusal = env_refusal(name)
    if refusal is not None:
        raise ValueError(refusal)
    return os.environ.get(name) or None
