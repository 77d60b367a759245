"""Small helpers shared by the pipeline tests."""

from decimal import Decimal

from aura_orchestrator.catalog.tokens import count_message_tokens

EXECUTE = "/api/v1/operations/execute"


def body(session_id: str = "video-1", prompt: str = "Plan a video about tides", **extra) -> dict:
    return {"session_id": session_id, "operation_type": "planning", "prompt": prompt, **extra}


def prompt_tokens(prompt: str, system_prompt: str | None = None, model: str = "sim-gpt") -> int:
    """What the pipeline reserves for the prompt (its own tokenizer, chat framing)."""
    messages = [("system", system_prompt)] if system_prompt else []
    return count_message_tokens([*messages, ("user", prompt)], model=model)


def micros(n: int) -> Decimal:
    return (Decimal(n) / Decimal(1_000_000)).quantize(Decimal("0.000001"))
