"""Reads and writes of cached answers (one table, scoped by project), on the ORM; the
SQL store does the same in SQL (aura_orchestrator/store/pg_sql.py)."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer beyond its text, in OpenAI's shapes: every choice (its message with tool
    calls or refusal, its logprobs and finish reason) and the provider's fields we pass
    back (`system_fingerprint`, usage details). Kept with a cached answer, so that a hit
    answers the same choices; a plain text answer has none (its `content` says it all).
    An embeddings answer is its `data`: the provider's list, verbatim."""

    choices: tuple[dict[str, Any], ...]
    passthrough: dict[str, Any] = field(default_factory=dict)
    data: list[dict[str, Any]] | None = None

    @property
    def kept(self) -> bool:
        """Whether a cache entry keeps it: choices or embeddings (passthrough alone not)."""
        return bool(self.choices) or self.data is not None

    @property
    def first(self) -> dict[str, Any] | None:
        """Choice 0 (what a single-answer reply shows), if the answer kept choices."""
        return next((c for c in self.choices if c.get("index", 0) == 0), None)

    def tool_calls(self) -> list[dict[str, Any]]:
        """Choice 0's tool calls."""
        first = self.first
        return list(((first or {}).get("message") or {}).get("tool_calls") or [])

    def payload(self) -> dict[str, Any]:
        """What the cache entry stores (JSON)."""
        payload = {"choices": list(self.choices), "passthrough": self.passthrough}
        return payload if self.data is None else payload | {"data": self.data}

    @classmethod
    def of_payload(cls, payload: dict[str, Any] | None) -> "Answer | None":
        if not payload:
            return None
        return cls(
            tuple(payload.get("choices") or ()),
            payload.get("passthrough") or {},
            payload.get("data"),
        )


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    content: str
    provider_name: str
    model_name: str
    tokens_in: int
    tokens_out: int
    answer: Answer | None = None  # stored when the answer is more than its text


def cache_lookup(*, project_id: int, key_hash: str) -> CachedAnswer | None:
    """The live entry for this key, counting the hit; None when absent or expired."""
    now = timezone.now()
    entry = (
        CacheEntry.objects.filter(project_id=project_id, key_hash=key_hash, expires_at__gt=now)
        .only("pk", "content", "provider_name", "model_name", "tokens_in", "tokens_out", "payload")
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
        answer=Answer.of_payload(entry.payload),
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
            "payload": answer.answer.payload() if answer.answer else None,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
            "hit_count": 0,
            "last_hit_at": None,
        },
    )


def cache_purge_expired(*, now=None) -> int:
    deleted, _ = CacheEntry.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
