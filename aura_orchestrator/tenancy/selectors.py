"""Reads for API keys: authentication by prefix and constant-time hash comparison."""

import hmac
from datetime import timedelta

from django.utils import timezone

from aura_orchestrator.caching.config_cache import MemoMiss, is_memo_only, memoized
from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.services import KEY_PREFIX, hash_key

# last_used_at is a hint for operators, not an audit trail: write it at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _key_by_hash(prefix: str, hashed: str) -> ApiKey | None:
    api_key = ApiKey.objects.select_related("project").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.hashed_key, hashed):
        return None
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key` (with its project loaded), or None.

    Known keys are memoized per process by their hash (see caching.config_cache): a
    revocation or an edit applies on the next request of the process that made it, of
    every worker with a shared cache (Redis) within 0.25 s, and within
    AURA["CONFIG_CACHE_SECONDS"] otherwise. Expiry is checked on every request.

    Inside `config_cache.memo_only()` it runs no query: a key not in the memo, or one
    whose last_used_at is due for its update, raises `MemoMiss`."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(raw_key) > 200:
        return None
    hashed = hash_key(raw_key)
    api_key = memoized(("api-key", hashed), lambda: _key_by_hash(parts[1], hashed))
    if api_key is None or not api_key.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        if is_memo_only():
            raise MemoMiss(("api-key-last-used", api_key.pk))
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
