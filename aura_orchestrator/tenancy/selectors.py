"""Reads for API keys: authentication by prefix and constant-time hash comparison."""

import hmac
from datetime import timedelta

from django.utils import timezone

from aura_orchestrator.caching.config_cache import is_memo_only, memoized
from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.services import KEY_PREFIX, hash_key

# last_used_at is a hint for operators, not an audit trail: write it at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_last_used_due: dict[int, object] = {}  # key pk -> when, claimed in memo-only mode


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

    Inside `config_cache.memo_only()` it runs no query: a key not in the memo raises
    `MemoMiss`, and a last_used_at due for its update is left to `last_used_write()`."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(raw_key) > 200:
        return None
    hashed = hash_key(raw_key)
    api_key = memoized(("api-key", hashed), lambda: _key_by_hash(parts[1], hashed))
    if api_key is None or not api_key.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        # Claimed first, on the memo's shared object: the requests in flight meanwhile see
        # it fresh, so one write per key and minute, not one per request.
        api_key.last_used_at = now
        if is_memo_only():  # no query here: the caller writes it off the loop
            _last_used_due[api_key.pk] = now
        else:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def last_used_due() -> bool:
    """Keys authenticated in memo-only mode whose last_used_at awaits its write."""
    return bool(_last_used_due)


def last_used_write() -> None:
    """Write the claimed last_used_at values (run in a thread: `db(last_used_write)`)."""
    while _last_used_due:
        pk, when = _last_used_due.popitem()
        ApiKey.objects.filter(pk=pk).update(last_used_at=when)
