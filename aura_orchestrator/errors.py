"""Our exceptions: each carries a machine code, an HTTP status and optional headers.

The one table the API maps to HTTP (`api/exceptions.py`); the pipeline turns them into
failed operation results with the same code.
"""

from typing import Any, ClassVar


class AuraError(Exception):
    # Per class, and per instance where one table maps many codes (api/exceptions.py).
    code: str = "error"
    status: int = 500
    default_message: ClassVar[str] = "Unexpected error."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequest(AuraError):
    code = "invalid_request"
    status = 400
    default_message = "The request is not valid."


class Unauthorized(AuraError):
    code = "unauthorized"
    status = 401
    default_message = "A valid API key is required: send 'Authorization: Bearer <key>'."


class Forbidden(AuraError):
    code = "forbidden"
    status = 403
    default_message = "This key may not do that."


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"
    default_message = "This key may not use that model."


class BudgetExceeded(AuraError):
    code = "budget_exceeded"
    status = 402
    default_message = "Budget exceeded."


class NotFound(AuraError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class UnknownModel(NotFound):
    code = "model_not_found"
    default_message = "The model is not configured."


class SchemaValidationFailed(AuraError):
    code = "schema_validation_failed"
    status = 422
    default_message = "The provider's answer does not match the response schema."


class RateLimited(AuraError):
    code = "rate_limited"
    status = 429
    default_message = "The provider is rate limiting; try again later."


class LimitReached(RateLimited):
    """One of our rate limits (not a provider's) refused the call, before any provider
    was asked: the same 429 `rate_limited`, with OpenAI's rate-limit headers so that
    SDKs wait and retry by themselves."""

    default_message = "Rate limit reached; try again later."

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any],
        retry_after: float,
        limit_headers: dict[str, str],
    ) -> None:
        super().__init__(message, details=details, retry_after=retry_after)
        self.limit_headers = limit_headers

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, **self.limit_headers}


class ProviderFailed(AuraError):
    code = "provider_error"
    status = 502
    default_message = "Every provider in the chain failed."


class ProviderSecretRefused(ProviderFailed):
    """The provider's key could not be given to it: its variable is not allowed
    (AURA_PROVIDER_SECRET_ENV) or its stored key cannot be decrypted. Nothing was sent."""

    code = "provider_secret_refused"


class ProviderTimedOut(AuraError):
    code = "timeout"
    status = 504
    default_message = "The provider did not answer in time."


class ClientDisconnected(AuraError):
    """Recorded in telemetry only: nobody is left to receive a response."""

    code = "client_disconnected"
    status = 499  # nginx's convention for a request the client abandoned
    default_message = "The client disconnected before the stream ended."


class ServiceUnavailable(AuraError):
    code = "unavailable"
    status = 503
    default_message = "The service is not ready."


class InternalError(AuraError):
    """A bug: recorded (the operation still gets its row) and answered as a 500."""

    code = "internal_error"
    status = 500
    default_message = "Internal error."
