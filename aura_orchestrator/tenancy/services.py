"""Writes for projects and API keys."""

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
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
    prefix = secrets.token_hex(4)
    while ApiKey.objects.filter(prefix=prefix).exists():
        prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        project=project, name=name, prefix=prefix, hashed_key=hash_key(raw_key)
    )
    return CreatedKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
