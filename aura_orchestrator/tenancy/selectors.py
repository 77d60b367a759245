"""Reads for API keys: authentication by prefix and constant-time hash comparison."""

import hmac
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from aura_orchestrator.caching.config_cache import is_memo_only, memoized
from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.services import KEY_PREFIX, hash_key

# last_used_at is a hint for operators, not an audit trail: write it at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_last_used_due: dict[int, object] = {}  # key pk -> when, claimed in memo-only mode


@dataclass(frozen=True, slots=True)
class _Match:
    api_key: ApiKey
    by_previous: bool  # the key a rotation replaced: accepted only within its grace


def _key_by_hash(prefix: str, hashed: str) -> _Match | None:
    """The key whose current or previous (rotated-out) secret is `hashed`."""
    api_key = (
        ApiKey.objects.select_related("project")
        .filter(Q(prefix=prefix) | Q(previous_prefix=prefix))
        .first()
    )
    if api_key is None:
        return None
    if api_key.prefix == prefix and hmac.compare_digest(api_key.hashed_key, hashed):
        return _Match(api_key, by_previous=False)
    if api_key.previous_prefix == prefix and hmac.compare_digest(
        api_key.previous_hashed_key, hashed
    ):
        return _Match(api_key, by_previous=True)
    return None


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key` (with its project loaded), or None.

    Known keys are memoized per process by their hash (see caching.config_cache): a
    revocation or an edit applies on the next request of the process that made it, of
    every worker with a shared cache (Redis) within 0.25 s, and within
    AURA["CONFIG_CACHE_SECONDS"] otherwise. Expiry, and the end of a rotated-out key's
    grace period, are checked on every request.

    Inside `config_cache.memo_only()` it runs no query: a key not in the memo raises
    `MemoMiss`, and a last_used_at due for its update is left to `last_used_write()`."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(raw_key) > 200:
        return None
    hashed = hash_key(raw_key)
    match = memoized(("api-key", hashed), lambda: _key_by_hash(parts[1], hashed))
    if match is None:
        return None
    api_key = match.api_key
    if not api_key.is_active or (match.by_previous and not api_key.in_grace):
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


class KeyNotFound(LookupError):
    """No single unrevoked key by that name: the message says which case, for a command."""


def api_key_named(*, project_name: str, name: str) -> ApiKey:
    """The one unrevoked key called `name` in the project (commands name keys so: set_budget,
    set_limits, rotate_api_key); KeyNotFound when there is none, or several."""
    keys = list(
        ApiKey.objects.select_related("project").filter(
            project__name=project_name, name=name.strip(), revoked_at__isnull=True
        )
    )
    if not keys:
        raise KeyNotFound(f"No unrevoked API key named {name!r} in project {project_name!r}.")
    if len(keys) > 1:
        prefixes = ", ".join(k.prefix for k in keys)
        raise KeyNotFound(
            f"{len(keys)} unrevoked keys are named {name!r} in project {project_name!r} "
            f"(prefixes {prefixes}): revoke all but one first."
        )
    return keys[0]
