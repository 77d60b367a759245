"""The error responses of the OpenAPI schema, written once for every view.

Three body shapes, as `api/exceptions.py` renders them:

- REST (`/api/v1/…`): `{"success": false, "error_code", "error_message", "details"?}`;
- execute: the whole execute body with `success: false` (`ExecuteFailure`);
- the OpenAI-compatible gateway (`/v1/…`): `{"error": {"message", "type", "param", "code"}}`.

`rest_errors`, `execute_errors` and `gateway_errors` build the error part of an
`extend_schema(responses=…)`: the statuses every request can meet (`EVERY_REQUEST`) plus
the ones a view names. A view names a status alone (`404`) or with its own description
(`(404, "`not_found`: no such session in this project.")`). `ERROR_HEADERS` goes into
`extend_schema(parameters=…)` for the headers some error statuses carry. `CODES` is the
table of machine codes per status (the fuzz test checks every error body against it).
"""

from collections.abc import Callable
from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from aura_orchestrator import errors
from aura_orchestrator.api import serializers as s
from aura_orchestrator.api.exceptions import error_body, openai_error_body
from aura_orchestrator.api.fields import Shape
from budgets.validators import (
    END_USER_MAX_LENGTH,
    END_USER_RULE,
    SESSION_ID_MAX_LENGTH,
    SESSION_ID_RULE,
)
from presets.operation_types import OperationType


@dataclass(frozen=True, slots=True)
class Status:
    codes: tuple[str, ...]
    description: str
    sample: str  # an example message


STATUSES: dict[int, Status] = {
    400: Status(
        ("invalid_request",),
        "the body, a parameter or a header is not valid. REST bodies name the fields in "
        "`details.fields`, gateway bodies in `error.param`.",
        "The request is not valid.",
    ),
    401: Status(
        ("unauthorized",),
        "no API key, a malformed `Authorization` header, or a key that is unknown, revoked "
        "or expired (`WWW-Authenticate: Bearer`).",
        "Invalid, revoked or expired API key.",
    ),
    402: Status(
        ("budget_exceeded",),
        "a hard budget cap would be overrun by this call's worst case; the message starts "
        'with "Budget exceeded".',
        "Budget exceeded: the session's cost cap of $5.000000 would be overrun.",
    ),
    403: Status(
        ("forbidden", "model_not_allowed"),
        "the key may not use this model or provider.",
        "This key may not do that.",
    ),
    404: Status(
        ("not_found", "model_not_found"),
        "nothing by that name (`model_not_found`: a model no enabled provider serves).",
        "Not found.",
    ),
    405: Status(
        ("method_not_allowed",),
        "the path does not take this method (`Allow` lists those it takes).",
        'Method "PUT" not allowed.',
    ),
    406: Status(
        ("not_acceptable",),
        "the `Accept` header does not admit `application/json`.",
        "Could not satisfy the request Accept header.",
    ),
    413: Status(
        ("payload_too_large",),
        "the body is larger than the server accepts.",
        "The request body is larger than the server accepts.",
    ),
    415: Status(
        ("unsupported_media_type",),
        "the body is not `application/json`.",
        'Unsupported media type "text/plain" in request.',
    ),
    422: Status(
        ("schema_validation_failed",),
        "the provider's answer did not match the response schema, also after one corrective call.",
        "The provider's answer does not match the response schema.",
    ),
    429: Status(
        ("rate_limited",),
        "the provider kept rate limiting through the retries, or a rate limit of this key "
        "refused the call; `Retry-After` says when to try again.",
        "The provider is rate limiting; try again later.",
    ),
    431: Status(
        ("request_header_fields_too_large",),
        "the request's headers are larger than the server accepts; refused before routing, "
        "in the REST shape on every path (the gateway's and execute's included).",
        "The request headers are larger than the server accepts.",
    ),
    502: Status(
        ("provider_error", "provider_secret_refused"),
        "every provider of the fallback chain failed (after retries); "
        "`provider_secret_refused`: the last provider's key variable is not allowed "
        "(AURA_PROVIDER_SECRET_ENV) or its stored key cannot be decrypted, nothing was sent.",
        "Every provider in the chain failed.",
    ),
    503: Status(
        ("unavailable",),
        "the database or the service is unavailable; retry shortly (`Retry-After`).",
        "The database is unavailable; retry shortly.",
    ),
    504: Status(
        ("timeout",),
        "the provider did not answer within the operation's deadline.",
        "The provider did not answer in time.",
    ),
}

# Codes only some views answer with (their own descriptions name them).
_OTHER_CODES = {422: ("constraints_unsatisfiable",)}  # POST /api/v1/optimize
CODES: dict[int, frozenset[str]] = {
    status: frozenset(entry.codes + _OTHER_CODES.get(status, ()))
    for status, entry in STATUSES.items()
}

# What any request to a DRF view can meet: more query parameters than Django reads (400),
# authentication, routing of the method, content negotiation, the size of the headers and
# the database behind the key.
EVERY_REQUEST = (400, 401, 405, 406, 431, 503)
# ... and a request whose JSON body is parsed and validated.
JSON_BODY = (400, 413, 415)
# ... and one that runs the pipeline (budgets, access, providers, response schema).
PIPELINE = (402, 403, 404, 422, 429, 502, 503, 504)

# Answered before routing, by the ASGI front (fastpath/app.py), in the REST shape on every
# path, /v1 and execute included.
REST_SHAPED_EVERYWHERE = frozenset({431})

ERROR_HEADERS = [
    OpenApiParameter(
        "WWW-Authenticate",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[401],
        description='`Bearer realm="api"`',
    ),
    OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[429, 503],
        description="Seconds to wait before retrying.",
    ),
]

# Path parameters several views share.
SESSION_ID = OpenApiParameter(
    "session_id",
    {"type": "string", "minLength": 1, "maxLength": SESSION_ID_MAX_LENGTH},
    OpenApiParameter.PATH,
    description=f"{SESSION_ID_RULE}.",
)
OPERATION_TYPE = OpenApiParameter(
    "operation_type",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    enum=OperationType.values,
    description="An operation type (other spellings, e.g. PascalCase, are accepted too).",
)
END_USER = OpenApiParameter(
    "end_user",
    {"type": "string", "minLength": 1, "maxLength": END_USER_MAX_LENGTH},
    OpenApiParameter.QUERY,
    description=f"An end user ({END_USER_RULE}): add the budgets that apply to them.",
)
NO_SUCH_SESSION = "`not_found`: no session with this id in the key's project."


class ShapeSchema(OpenApiSerializerExtension):
    """A request body's table (`api/fields.Shape`, e.g. `api/bodies.EXECUTE`) as its
    component, each nested table as a component of its own: the schema is generated from
    what the parser accepts, never written beside it."""

    target_class = "aura_orchestrator.api.fields.Shape"

    def get_name(self, auto_schema, direction):
        return self.target.name  # drf-spectacular appends "Request"

    def map_serializer(self, auto_schema, direction):
        def ref(shape: Shape) -> dict:
            component = ResolvedComponent(
                name=f"{shape.name}Request",
                type=ResolvedComponent.SCHEMA,
                object=shape,
                schema=shape.schema(ref),
            )
            auto_schema.registry.register_on_missing(component)
            return component.ref

        return self.target.schema(ref)


# --- The three body shapes -------------------------------------------------------------------


class _FailureFields(serializers.Serializer):
    """What every refusal says, in the REST shape and in execute's."""

    success = serializers.ChoiceField(choices=[False], help_text="Always false.")
    error_code = serializers.CharField(help_text="Machine code (see the status' description).")
    error_message = serializers.CharField()
    details = serializers.DictField(
        required=False, help_text="Context, e.g. `fields`: the validation errors by field."
    )


class ApiErrorSerializer(_FailureFields):
    """A refused REST request."""


# The serializer metaclass merges the declared fields, first base first: `success` is the
# failure's ChoiceField, which the type checker sees as clashing with the BooleanField.
class ExecuteFailureSerializer(_FailureFields, s.ExecuteOutputSerializer):  # type: ignore[misc]
    """A failed operation: the execute body with `success: false`. `telemetry` and
    `budget` are filled when the pipeline ran, null when the request was refused first."""


class OpenAIErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField(
        help_text="invalid_request_error, authentication_error, insufficient_quota, "
        "permission_error, not_found_error, invalid_response_error, rate_limit_error or "
        "api_error."
    )
    param = serializers.CharField(allow_null=True, help_text="The offending parameter, if any.")
    code = serializers.CharField(help_text="Our machine code (see the status' description).")


class OpenAIErrorSerializer(serializers.Serializer):
    """A refused gateway request, in OpenAI's error shape."""

    error = OpenAIErrorDetailSerializer()


# --- Responses per status --------------------------------------------------------------------


def _sample_error(status: int) -> errors.AuraError:
    entry = STATUSES[status]
    error = errors.AuraError(entry.sample)
    error.code, error.status = entry.codes[0], status  # as api/exceptions.py does
    return error


def _description(status: int, text: str | None) -> str:
    if text is not None:
        return text
    codes = ", ".join(f"`{code}`" for code in STATUSES[status].codes)
    return f"{codes}: {STATUSES[status].description}"


def _rest_response(status: int, description: str) -> OpenApiResponse:
    body = error_body(_sample_error(status))
    example = OpenApiExample(STATUSES[status].codes[0], value=body, status_codes=[status])
    return OpenApiResponse(ApiErrorSerializer, description=description, examples=[example])


def _execute_response(status: int, description: str) -> OpenApiResponse:
    return OpenApiResponse(ExecuteFailureSerializer, description=description)


def _gateway_response(status: int, description: str) -> OpenApiResponse:
    body = openai_error_body(_sample_error(status))
    example = OpenApiExample(STATUSES[status].codes[0], value=body, status_codes=[status])
    return OpenApiResponse(OpenAIErrorSerializer, description=description, examples=[example])


def _responses(statuses, build) -> dict[int, OpenApiResponse]:
    described: dict[int, str | None] = dict.fromkeys(EVERY_REQUEST)
    for entry in statuses:
        status, text = entry if isinstance(entry, tuple) else (entry, None)
        if status not in STATUSES:
            raise ValueError(f"no error status {status} in api/openapi.py's table")
        described[status] = text
    return {
        status: (_rest_response if status in REST_SHAPED_EVERYWHERE else build)(
            status, _description(status, text)
        )
        for status, text in sorted(described.items())
    }


def rest_errors(*statuses: int | tuple[int, str]) -> dict[int, OpenApiResponse]:
    """REST error responses: `EVERY_REQUEST`'s and `statuses`'."""
    return _responses(statuses, _rest_response)


def execute_errors(*statuses: int | tuple[int, str]) -> dict[int, OpenApiResponse]:
    """Execute's error responses (the whole execute body): `EVERY_REQUEST`'s and `statuses`'."""
    return _responses(statuses, _execute_response)


def shaped_errors(
    serializer: type, body_of: Callable[[errors.AuraError], dict], *statuses: int | tuple[int, str]
) -> dict[int, OpenApiResponse]:
    """Error responses in a view's own body shape (`body_of` an error): `EVERY_REQUEST`'s
    and `statuses`' (the Anthropic-compatible front's)."""

    def build(status: int, description: str) -> OpenApiResponse:
        body = body_of(_sample_error(status))
        example = OpenApiExample(STATUSES[status].codes[0], value=body, status_codes=[status])
        return OpenApiResponse(serializer, description=description, examples=[example])

    return _responses(statuses, build)


def gateway_errors(*statuses: int | tuple[int, str]) -> dict[int, OpenApiResponse]:
    """Gateway error responses, OpenAI's shape: `EVERY_REQUEST`'s and `statuses`'."""
    return _responses(statuses, _gateway_response)
