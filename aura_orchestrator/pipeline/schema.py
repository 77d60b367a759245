"""Step 6: the answer against the request's JSON schema, with one corrective call.

The first (invalid) answer is settled before the corrective call reserves again, so
both are charged and both count against hard caps. A stream is checked at its end,
without a repair (its text has already been sent).
"""

import json
from typing import Any

import jsonschema
import referencing
import referencing.exceptions

from aura_orchestrator import errors
from aura_orchestrator.catalog.tokens import count_tokens
from aura_orchestrator.pipeline.chain import call_chain
from aura_orchestrator.pipeline.plan import reserve, settle_so_far
from aura_orchestrator.pipeline.types import Run
from aura_orchestrator.providers.base import ChatMessage, CompletionResult

# An empty registry: a schema's references never make us fetch anything (the edge
# refuses non-local ones); a recursive schema over a deep answer fails, it never raises.
_NO_REMOTE_SCHEMAS = referencing.Registry()


def schema_error(content: str, schema: dict[str, Any]) -> str | None:
    """What is wrong with `content` as a document of `schema`; None when it matches."""
    text = content.strip()
    if text.startswith("```"):  # tolerate a fenced answer: ```json … ```
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"the answer is not valid JSON ({exc})"
    validator = jsonschema.validators.validator_for(schema)(schema, registry=_NO_REMOTE_SCHEMAS)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    except (RecursionError, referencing.exceptions.Unresolvable) as exc:
        return f"the answer could not be checked against the schema ({type(exc).__name__})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"


async def validated_content(run: Run, first: CompletionResult, schema: dict[str, Any]) -> str:
    """Step 6. The content if it validates against `schema` (the request's
    response_schema); else ask once more with the error appended (charged to the same
    budget), then fail with schema_validation_failed."""
    problem = schema_error(first.content, schema)
    if problem is None:
        return first.content
    # Charge the first answer now, then hold the worst case of the corrective call.
    await settle_so_far(run)
    correction = (
        f"Your previous answer did not match the required JSON schema: {problem}. "
        "Reply again with only a JSON document that matches the schema."
    )
    messages = [
        *run.request.messages,
        ChatMessage(role="assistant", content=first.content),
        ChatMessage(role="user", content=correction),
    ]
    plan = run.plan
    assert plan is not None  # set by prepare (step 1)
    extra = count_tokens(first.content + correction, model=plan.chain[0].model_name) + 8
    await reserve(run, extra_prompt_tokens=extra)
    second = await call_chain(run, messages)
    problem = schema_error(second.content, schema)
    if problem is not None:
        raise errors.SchemaValidationFailed(
            f"The answer does not match the response schema after one corrective retry: {problem}.",
            details={"content": second.content[:2000]},
        )
    return second.content


def streamed_schema_failure(run: Run, content: str) -> errors.SchemaValidationFailed | None:
    """Step 6 for a stream that completed: the error if its text does not match."""
    schema = run.request.response_schema
    if schema is None:
        return None
    problem = schema_error(content, schema)
    if problem is None:
        return None
    return errors.SchemaValidationFailed(
        f"The streamed answer does not match the response schema: {problem}.",
        details={"content": content[:2000]},
    )
