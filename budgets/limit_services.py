"""Writes of rate limits (set_limits, and what the admin does by its forms)."""

from django.db import transaction

from aura_orchestrator.tenancy.models import ApiKey, Project
from budgets.limit_models import RateLimit


@transaction.atomic
def rate_limit_set(
    *,
    project: Project,
    scope: str,
    api_key: ApiKey | None = None,
    end_user: str = "",
    model_name: str = "",
    changes: dict[str, object],
) -> tuple[RateLimit, bool]:
    """Create or update the limit set of this scope and model narrowing (looked up by all
    of them: one per scope and model), active, validated as the admin validates it.
    `changes`: the fields to set (requests_per_minute, tokens_per_minute, max_in_flight,
    allowed_models); the others keep their value. Returns (limit set, created)."""
    lookup = {
        "project": project,
        "scope": scope,
        "api_key": api_key,
        "end_user": end_user,
        "model_name": model_name,
    }
    limit = RateLimit.objects.select_for_update().filter(**lookup).order_by("pk").first()
    created = limit is None
    if limit is None:
        limit = RateLimit(**lookup)
    for name, value in changes.items():
        setattr(limit, name, value)
    limit.active = True
    limit.full_clean()
    limit.save()
    return limit, created
