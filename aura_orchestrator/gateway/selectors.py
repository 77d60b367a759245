"""Reads: the model list the gateway shows (`GET /v1/models`)."""

from aura_orchestrator.catalog.selectors import models_list

# Bare names route over every provider that serves them, so no one provider owns them.
SHARED_OWNER = "aura-orchestrator"


def gateway_model_list() -> list[dict]:
    """OpenAI model objects for every enabled model of every enabled provider: first each
    bare name once (what most clients send; the fallback chain spans every provider that
    serves it), then each `provider/model` (pinned to that provider). Both are accepted
    as `model` by `/v1/chat/completions`."""
    models = models_list()
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
