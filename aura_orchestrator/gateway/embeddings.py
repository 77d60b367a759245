"""An OpenAI embeddings body (plus our headers) → one `OperationRequest`, and its result
→ OpenAI's embeddings list.

Validated as strictly as OpenAI does (400 naming the field, its path for an item);
fields this gateway does not read go to the provider verbatim, as chat's do. `metadata`
is not an embeddings field: it is one of those, never read for a session.
"""

from collections.abc import Mapping

from aura_orchestrator.api.exceptions import invalid_field
from aura_orchestrator.gateway.translate import aura_fields, model_field, user_field
from aura_orchestrator.pipeline import EmbeddingInput, OperationRequest, OperationResult
from aura_orchestrator.providers.base import EmbeddingInputValue
from presets.operation_types import OperationType

MAX_INPUTS = 2048  # OpenAI's limit on any array of `input`
MAX_TOKEN_ID = 2**31 - 1
# No model comes near; a bigger number is answered here, not by a provider's 4xx.
MAX_DIMENSIONS = 65_536
ENCODINGS = ("float", "base64")
OWN_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
DEFAULT_OPERATION = OperationType.RAG_RETRIEVAL
_INPUT_RULE = (
    "`input` must be a non-empty string, a list of non-empty strings, a list of tokens or "
    f"a list of token lists, of at most {MAX_INPUTS} items."
)


def embedding_operation_from(
    *, body: object, headers: Mapping[str, str], default_session: str
) -> OperationRequest:
    """Validate an embeddings body and build the pipeline's request from it."""
    if not isinstance(body, dict):
        raise invalid_field("body", "The request body must be a JSON object.")
    model = model_field(body)
    embedding = EmbeddingInput(
        input=input_value(body.get("input")),
        dimensions=_dimensions(body.get("dimensions")),
        encoding_format=_encoding(body.get("encoding_format")),
    )
    user = user_field(body)
    aura = aura_fields(
        headers, {}, default_session=default_session, default_operation=DEFAULT_OPERATION
    )
    return OperationRequest(
        session_id=aura.session_id,
        operation_type=aura.operation_type,
        messages=(),
        enable_cache=aura.enable_cache,
        budget_name=aura.budget_name,
        model=model,
        user=user,
        end_user=aura.end_user_or(user),
        extra={k: v for k, v in body.items() if k not in OWN_FIELDS},
        source="gateway",
        embedding=embedding,
    )


def input_value(value: object) -> EmbeddingInputValue:
    """`input` as sent, once every item is checked: one kind of item throughout (the
    first item's), none empty; a bad item is named by its path (`input[3]`)."""
    if isinstance(value, str) and value:
        return value
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        raise invalid_field("input", _INPUT_RULE)
    first = value[0]
    if isinstance(first, str):
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise invalid_field(
                    f"input[{i}]", "Each item must be a non-empty string, as the first."
                )
        return value
    if isinstance(first, list):
        for i, item in enumerate(value):
            if not isinstance(item, list) or not item or len(item) > MAX_INPUTS:
                raise invalid_field(
                    f"input[{i}]", f"Each item must be a list of 1 to {MAX_INPUTS} tokens."
                )
            _check_tokens(item, f"input[{i}]")
        return value
    _check_tokens(value, "input")
    return value


def _check_tokens(tokens: list, path: str) -> None:
    for i, token in enumerate(tokens):
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= MAX_TOKEN_ID:
            raise invalid_field(
                f"{path}[{i}]", f"A token must be an integer from 0 to {MAX_TOKEN_ID}."
            )


def _dimensions(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSIONS:
        raise invalid_field(
            "dimensions", f"`dimensions` must be an integer from 1 to {MAX_DIMENSIONS}."
        )
    return value


def _encoding(value: object) -> str | None:
    if value is None:
        return None
    if value not in ENCODINGS:
        raise invalid_field("encoding_format", "`encoding_format` must be float or base64.")
    return str(value)


def embeddings_body(result: OperationResult) -> dict:
    """OpenAI's answer: the provider's `data` as it sent it (base64 untouched), the model
    that served, the input tokens billed (0 on a cache hit, as chat's usage)."""
    answer = result.answer
    assert answer is not None and answer.data is not None  # an embeddings success
    tokens_in = result.telemetry["tokens_in"]
    return {
        "object": "list",
        "data": answer.data,
        "model": result.telemetry["model_name"],
        "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
    }
