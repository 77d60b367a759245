"""The one table that maps exceptions to HTTP: a machine code, a message, a status.

REST bodies: {"success": false, "error_code", "error_message", "details"} (the execute
endpoint adds the rest of its shape). The OpenAI gateway renders the same errors in
OpenAI's shape (see `openai_error_body`). No expected input ever yields a 500.
"""

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, JsonResponse
from django.views.defaults import bad_request as default_bad_request
from django.views.defaults import page_not_found
from django.views.defaults import server_error as default_server_error
from rest_framework import exceptions as drf
from rest_framework.response import Response

from aura_orchestrator import errors
from aura_orchestrator.dbhealth import DATABASE_UNAVAILABLE, unavailable

logger = logging.getLogger(__name__)

# DRF exception → (our code, status). Order matters: subclasses first.
_DRF_TABLE: list[tuple[type[drf.APIException], str, int]] = [
    (drf.ParseError, "invalid_request", 400),
    (drf.ValidationError, "invalid_request", 400),
    (drf.NotAuthenticated, "unauthorized", 401),
    (drf.AuthenticationFailed, "unauthorized", 401),
    (drf.PermissionDenied, "forbidden", 403),
    (drf.NotFound, "not_found", 404),
    (drf.MethodNotAllowed, "method_not_allowed", 405),
    (drf.NotAcceptable, "not_acceptable", 406),
    (drf.UnsupportedMediaType, "unsupported_media_type", 415),
    (drf.Throttled, "rate_limited", 429),
]


def _first_message(detail, prefix: str = "") -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            return _first_message(value, f"{prefix}{name}: " if name else prefix)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0], prefix)
    return f"{prefix}{detail}"


def invalid_field(field: str, message: str) -> errors.InvalidRequest:
    """A 400 naming one field (a path such as `messages[0].content`): under `fields` as
    DRF's validation errors name theirs (REST bodies), and as `param` (OpenAI's body)."""
    return errors.InvalidRequest(message, details={"fields": {field: [message]}, "param": field})


def header_fields_too_large(limit: int) -> errors.AuraError:
    error = errors.AuraError(f"The request headers exceed {limit} bytes.")
    error.code, error.status = "request_header_fields_too_large", 431
    return error


def to_aura_error(exc: Exception) -> errors.AuraError | None:
    """Our error for any exception the API may meet; None for a genuine bug."""
    if isinstance(exc, errors.AuraError):
        return exc
    if isinstance(exc, Http404):
        return errors.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return errors.Forbidden()
    if isinstance(exc, DATABASE_UNAVAILABLE):
        # Down, restarting, saturated or a broken deadlock: 503, the pools purged.
        return unavailable(exc)
    if isinstance(exc, TooManyFieldsSent):  # read by DRF's content negotiation
        return errors.InvalidRequest(
            "Too many query parameters.", details={"param": "query", "fields": {"query": []}}
        )
    if isinstance(exc, RequestDataTooBig):  # read lazily by DRF, inside the view
        error = errors.AuraError("The request body is larger than the server accepts.")
        error.code, error.status = "payload_too_large", 413
        return error
    for cls, code, status in _DRF_TABLE:
        if isinstance(exc, cls):
            detail = exc.detail
            if cls is drf.ParseError:
                message = f"Malformed request body: {detail}"
            elif cls is drf.ValidationError:
                message = "Invalid request: " + _first_message(detail)
            else:
                message = str(detail)
            error = errors.AuraError(
                message,
                details={"fields": detail} if cls is drf.ValidationError else None,
                retry_after=getattr(exc, "wait", None),
            )
            error.code, error.status = code, status  # instance-level: one table, not classes
            return error
    return None


def error_body(error: errors.AuraError) -> dict:
    body = {"success": False, "error_code": error.code, "error_message": error.message}
    if error.details:
        body["details"] = error.details
    return body


def openai_error_body(error: errors.AuraError) -> dict:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "insufficient_quota",
        403: "permission_error",
        404: "not_found_error",
        422: "invalid_response_error",
        429: "rate_limit_error",
    }.get(error.status, "api_error")
    return {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}


def error_reply(
    exc: Exception, render: Callable[[errors.AuraError], dict], *, where: object
) -> tuple[int, dict, dict[str, str]]:
    """(status, body, headers) for an exception a view raised: `render` is the view's
    body shape; a genuine bug is logged (with `where`) and answered as internal_error."""
    error = to_aura_error(exc)
    if error is None:
        logger.exception("unhandled error in %s", where)
        error = errors.AuraError("Internal error; it has been logged.")
        error.code = "internal_error"
    headers = dict(error.headers)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return error.status, render(error), headers


def exception_handler(exc: Exception, context: dict) -> Response | None:
    view = context.get("view")
    render = getattr(view, "render_error", None) or error_body
    status, body, headers = error_reply(exc, render, where=view)
    return Response(body, status=status, headers=headers)


def _api_reply(request, error: errors.AuraError) -> JsonResponse | None:
    """`error` in the shape of the API path asked for; None for people's pages."""
    if request.path.startswith("/v1/"):
        return JsonResponse(openai_error_body(error), status=error.status)
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(error), status=error.status)
    return None


def not_found(request, exception=None):
    """handler404: JSON for API paths, Django's page for people."""
    error = errors.NotFound(f"No endpoint at {request.path}.")
    return _api_reply(request, error) or page_not_found(request, exception)


def bad_request(request, exception=None):
    """handler400 (a Host not in ALLOWED_HOSTS, a suspicious request): JSON with a code for
    API paths, Django's page for people."""
    error = errors.InvalidRequest("The request was refused (check the Host header).")
    return _api_reply(request, error) or default_bad_request(request, exception)


def server_error(request):
    """handler500: JSON for API paths (details are in the log, never in the body)."""
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse(
            {"success": False, "error_code": "internal_error", "error_message": "Internal error."},
            status=500,
        )
    return default_server_error(request)
