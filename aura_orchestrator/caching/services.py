"""Reads and writes of cached answers (one table, scoped by project)."""

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
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
    """The hit counter is a statistic for operators: on PostgreSQL its commit does not
    wait for the WAL flush (a crash of the database may lose the last few counts, never
    an answer or a charge), which keeps a disk flush off every cache hit."""
    counted = CacheEntry.objects.filter(pk=pk)
    if connection.vendor != "postgresql":
        counted.update(hit_count=F("hit_count") + 1, last_hit_at=now)
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        counted.update(hit_count=F("hit_count") + 1, last_hit_at=now)


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


_TABLE = CacheEntry._meta.db_table
_ANSWER_COLUMNS = "content, provider_name, model_name, tokens_in, tokens_out"
# The async store's statements (PostgreSQL): the lookup counts its hit in the same
# statement; the store is update_or_create's upsert.
LOOKUP_AND_COUNT_SQL = f"""
UPDATE {_TABLE} SET hit_count = hit_count + 1, last_hit_at = %(now)s
 WHERE project_id = %(project)s AND key_hash = %(key)s AND expires_at > %(now)s
RETURNING {_ANSWER_COLUMNS}
"""
STORE_SQL = f"""
INSERT INTO {_TABLE} (project_id, key_hash, operation_type, {_ANSWER_COLUMNS}, created_at,
                      expires_at, hit_count, last_hit_at)
VALUES (%(project)s, %(key)s, %(operation_type)s, %(content)s, %(provider_name)s,
        %(model_name)s, %(tokens_in)s, %(tokens_out)s, %(now)s, %(expires)s, 0, NULL)
ON CONFLICT (project_id, key_hash) DO UPDATE SET
    operation_type = EXCLUDED.operation_type, content = EXCLUDED.content,
    provider_name = EXCLUDED.provider_name, model_name = EXCLUDED.model_name,
    tokens_in = EXCLUDED.tokens_in, tokens_out = EXCLUDED.tokens_out,
    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
    hit_count = 0, last_hit_at = NULL
"""


def store_params(
    *, project_id: int, key_hash: str, operation_type: str, answer: CachedAnswer, ttl_seconds: int
) -> dict:
    now = timezone.now()
    return {
        "project": project_id,
        "key": key_hash,
        "operation_type": operation_type,
        "content": answer.content,
        "provider_name": answer.provider_name,
        "model_name": answer.model_name,
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
        "now": now,
        "expires": now + timedelta(seconds=ttl_seconds),
    }


def cache_purge_expired(*, now=None) -> int:
    deleted, _ = CacheEntry.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
