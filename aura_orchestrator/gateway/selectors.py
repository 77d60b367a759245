"""Reads: the model list the gateway shows (`GET /v1/models`)."""

from aura_orchestrator.catalog.selectors import models_list
from aura_orchestrator.tenancy.models import ApiKey
from budgets.limits import access_rules_for

# Bare names route over every provider that serves them, so no one provider owns them.
SHARED_OWNER = "aura-orchestrator"


def gateway_model_list(*, api_key: ApiKey) -> list[dict]:
    """OpenAI model objects for every enabled model of every enabled provider that
    `api_key` may use (its limit sets' allow-lists): first each bare name once (what most
    clients send; the fallback chain spans every provider that serves it), then each
    `provider/model` (pinned to that provider). Both are accepted as `model` by
    `/v1/chat/completions`."""
    rules = access_rules_for(project_id=api_key.project_id, api_key_id=api_key.pk, end_user=None)
    models = [m for m in models_list() if rules.allows_route(m.provider.name, m.name)]
    bare: dict[str, dict] = {}
    pinned = []
    for model in models:
        created = int(model.created_at.timestamp())
        if model.name not in bare:
            bare[model.name] = {
                "id": model.name,
                "object": "model",
                "created": created,
                "owned_by": SHARED_OWNER,
            }
        pinned.append(
            {
                "id": f"{model.provider.name}/{model.name}",
                "object": "model",
                "created": created,
                "owned_by": model.provider.name,
            }
        )
    return [*bare.values(), *pinned]
