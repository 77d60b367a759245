"""Reads for API keys: authentication by prefix and constant-time hash comparison."""

import hmac
from datetime import timedelta

from django.utils import timezone

from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.services import KEY_PREFIX, hash_key

# last_used_at is a hint for operators, not an audit trail: write it at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key` (with its project loaded), or None."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(raw_key) > 200:
        return None
    api_key = ApiKey.objects.select_related("project").filter(prefix=parts[1]).first()
    if api_key is None or not hmac.compare_digest(api_key.hashed_key, hash_key(raw_key)):
        return None
    if not api_key.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
