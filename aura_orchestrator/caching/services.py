"""Reads and writes of cached answers (one table, scoped by project), on the ORM; the
SQL store does the same in SQL (aura_orchestrator/store/pg_sql.py)."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    content: str
    provider_name: str
    model_name: str
    tokens_in: int
    tokens_out: int


def cache_lookup(*, project_id: int, key_hash: str) -> CachedAnswer | None:
    """The live entry for this key, counting the hit; None when absent or expired."""
    now = timezone.now()
    entry = (
        CacheEntry.objects.filter(project_id=project_id, key_hash=key_hash, expires_at__gt=now)
        .only("pk", "content", "provider_name", "model_name", "tokens_in", "tokens_out")
        .first()
    )
    if entry is None:
        return None
    _count_hit(entry.pk, now)
    return CachedAnswer(
        content=entry.content,
        provider_name=entry.provider_name,
        model_name=entry.model_name,
        tokens_in=entry.tokens_in,
        tokens_out=entry.tokens_out,
    )


def _count_hit(pk: int, now) -> None:
    """The hit counter, a statistic for operators (the SQL store counts it in the
    lookup's own statement, without waiting for the WAL flush)."""
    CacheEntry.objects.filter(pk=pk).update(hit_count=F("hit_count") + 1, last_hit_at=now)


def cache_store(
    *,
    project_id: int,
    key_hash: str,
    operation_type: str,
    answer: CachedAnswer,
    ttl_seconds: int,
) -> None:
    now = timezone.now()
    CacheEntry.objects.update_or_create(
        project_id=project_id,
        key_hash=key_hash,
        defaults={
            "operation_type": operation_type,
            "provider_name": answer.provider_name,
            "model_name": answer.model_name,
            "content": answer.content,
            "tokens_in": answer.tokens_in,
            "tokens_out": answer.tokens_out,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
            "hit_count": 0,
            "last_hit_at": None,
        },
    )


def cache_purge_expired(*, now=None) -> int:
    deleted, _ = CacheEntry.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
