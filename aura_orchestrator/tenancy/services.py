"""Writes for projects and API keys."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aura_orchestrator.tenancy.models import ApiKey, Project

KEY_PREFIX = "aura"


def hash_key(raw_key: str) -> str:
    # Keys carry 190+ bits of entropy, so a fast hash is safe (no brute force of a
    # random 32-byte secret) and keeps authentication off the hot path's CPU budget.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CreatedKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


def project_get_or_create(*, name: str | None = None) -> Project:
    project, _ = Project.objects.get_or_create(name=name or settings.AURA["DEFAULT_PROJECT"])
    return project


@transaction.atomic
def api_key_create(*, name: str, project: Project) -> CreatedKey:
    prefix, raw_key = _new_secret()
    api_key = ApiKey.objects.create(
        project=project, name=name, prefix=prefix, hashed_key=hash_key(raw_key)
    )
    return CreatedKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


def _new_secret() -> tuple[str, str]:
    """A fresh (prefix, raw key); the prefix is unique among current and previous keys."""
    while True:
        prefix = secrets.token_hex(4)
        if not ApiKey.objects.filter(Q(prefix=prefix) | Q(previous_prefix=prefix)).exists():
            break
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, grace: timedelta) -> CreatedKey:
    """A new secret for `api_key` (its budgets, limits and history stay with it); the
    old one keeps working for `grace` (zero: not at all). A key still in the grace of
    an earlier rotation loses that older secret now: one previous generation at most."""
    row = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if not row.is_active:
        raise ValueError(f"API key '{row.name}' is revoked or expired: create a new one.")
    now = timezone.now()
    prefix, raw_key = _new_secret()
    row.previous_prefix = row.prefix if grace > timedelta(0) else None
    row.previous_hashed_key = row.hashed_key if grace > timedelta(0) else ""
    row.previous_valid_until = now + grace if grace > timedelta(0) else None
    row.prefix, row.hashed_key, row.rotated_at = prefix, hash_key(raw_key), now
    row.save(
        update_fields=[
            "prefix",
            "hashed_key",
            "rotated_at",
            "previous_prefix",
            "previous_hashed_key",
            "previous_valid_until",
        ]
    )
    return CreatedKey(api_key=row, raw_key=raw_key)
