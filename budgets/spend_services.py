"""Writes of spend budgets and alert endpoints, for `manage.py set_budget` and the admin."""

from decimal import Decimal

from django.db import transaction

from aura_orchestrator.catalog.models import Provider
from aura_orchestrator.tenancy.models import ApiKey, Project
from budgets.spend_models import (
    DEFAULT_THRESHOLDS,
    AlertEndpoint,
    SpendBudget,
    parse_thresholds,
)
from budgets.spending import spend_recap


def spend_budget_set(
    *,
    project: Project,
    scope: str,
    api_key: ApiKey | None = None,
    end_user: str = "",
    provider: Provider | None = None,
    model_name: str = "",
    period: str,
    max_tokens: int | None,
    max_cost: Decimal | None,
    hard: bool | None,
    thresholds: str | None,
) -> tuple[SpendBudget, bool]:
    """Create or update the budget of this scope and narrowing, active, validated as the
    admin validates it (the model has no unique constraint: it is looked up by all of
    them). `hard` and `thresholds` None keep an existing budget's (a new one's: hard,
    50,80,100). When an existing budget's caps or hard/soft change, its periods are
    re-balanced to them (`spend_recap`). Returns (budget, created)."""
    lookup = {
        "project": project,
        "scope": scope,
        "api_key": api_key,
        "end_user": end_user,
        "provider": provider,
        "model_name": model_name,
    }
    with transaction.atomic():
        budget = SpendBudget.objects.select_for_update().filter(**lookup).order_by("pk").first()
        created = budget is None
        if budget is None:
            budget = SpendBudget(**lookup)
        if hard is None:
            hard = True if created else budget.enforce_hard_limits
        before = (budget.max_tokens, budget.max_cost, budget.enforce_hard_limits)
        recap = not created and before != (max_tokens, max_cost, hard)
        if thresholds is not None:
            budget.thresholds = ",".join(str(t) for t in parse_thresholds(thresholds))
        elif created:
            budget.thresholds = DEFAULT_THRESHOLDS
        budget.period = period
        budget.max_tokens = max_tokens
        budget.max_cost = max_cost
        budget.enforce_hard_limits = hard
        budget.active = True
        budget.full_clean()
        budget.save()
    if recap:  # after the commit: spend_recap locks each period in a transaction of its own
        spend_recap(budget=budget)
    return budget, created


def alert_endpoint_set(*, project: Project, url: str, secret: str) -> tuple[AlertEndpoint, bool]:
    """Create or update the project's webhook at `url` (active, signed with `secret`;
    an empty secret keeps an existing endpoint's). Returns (endpoint, created)."""
    with transaction.atomic():
        endpoint = (
            AlertEndpoint.objects.select_for_update().filter(project=project, url=url).first()
        )
        created = endpoint is None
        if endpoint is None:
            endpoint = AlertEndpoint(project=project, url=url)
        if secret:
            endpoint.secret = secret
        endpoint.active = True
        endpoint.full_clean()
        endpoint.save()
    return endpoint, created
