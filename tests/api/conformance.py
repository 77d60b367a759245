"""Is a response one the OpenAPI schema documents for its operation? Shared by the fuzz
test and the test of the statuses a fuzzer cannot provoke."""

import json

from openai.types.chat import ChatCompletionChunk
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aura_orchestrator.api.openapi import CODES

# A documented status, content type and headers, and a body that matches the documented
# schema (a stream: each event).
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def media_type(response) -> str:
    value = response.headers.get("content-type") or ""
    if isinstance(value, list):  # schemathesis' responses keep every value of a header
        value = value[0] if value else ""
    return value.partition(";")[0].strip()


def _stream_problem(text: str) -> str | None:
    """A streamed answer: chunks OpenAI's SDK reads, then [DONE] (or an error event)."""
    events = [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]
    if not events or (events[-1] != "[DONE]" and '"error"' not in events[-1]):
        return f"the stream does not end with [DONE] or an error: {events[-1:]}"
    for data in events[:-1]:
        try:
            ChatCompletionChunk.model_validate(json.loads(data))
        except ValueError as exc:
            return f"not a chat.completion.chunk: {data[:200]} ({str(exc)[:300]})"
    return None


def problems(case, response, headers: dict | None = None) -> list[tuple[str, str]]:
    """(kind, detail) of everything undocumented about `response` to `case`'s operation:
    schemathesis' checks, the error code of an error body (one of its status' codes in
    api/openapi.py) and each event of a stream."""
    found = []
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (Failure, FailureGroup) as exc:
        for failure in exc.exceptions if isinstance(exc, FailureGroup) else [exc]:
            found.append((f"{failure.title} ({response.status_code})", failure.message[:800]))
    kind = media_type(response)
    if response.status_code >= 400 and kind == "application/json":
        body = response.json()
        code = None
        if isinstance(body, dict):
            code = body.get("error_code") or (body.get("error") or {}).get("code")
        expected = CODES.get(response.status_code, frozenset())
        if code not in expected:
            found.append((f"error code {code!r} at {response.status_code}", f"{sorted(expected)}"))
    if kind == "text/event-stream":
        problem = _stream_problem(response.text)
        if problem:
            found.append(("stream", problem))
    return found
