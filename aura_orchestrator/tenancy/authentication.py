"""DRF authentication by `Authorization: Bearer <api key>` (what the OpenAI SDK sends) or
`x-api-key: <api key>` (what the Anthropic SDK sends); Bearer wins when both are given."""

from django.db import close_old_connections, connection
from rest_framework import authentication, exceptions, permissions

from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.selectors import api_key_authenticate


class ServicePrincipal:
    """The caller behind an API key; `request.user` for API views."""

    is_authenticated = True
    is_staff = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.project = api_key.project

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class BearerApiKey(authentication.BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, raw_key = header.partition(" ")
            if scheme.lower() != self.keyword or not raw_key.strip():
                raise exceptions.AuthenticationFailed("Expected 'Authorization: Bearer <api key>'.")
        else:
            raw_key = request.META.get("HTTP_X_API_KEY", "")
            if not raw_key:
                return None
        try:
            api_key = api_key_authenticate(raw_key=raw_key.strip())
        finally:
            # Under ASGI each request runs its sync code in a thread of its own, which keeps
            # its (pooled) connection until the response is finished, i.e. across the
            # provider call. Hand it back now: hundreds of requests in flight must not hold
            # hundreds of connections. Never inside an atomic block (a test's transaction,
            # as ATOMIC_REQUESTS is off): closing there would discard that transaction.
            if not connection.in_atomic_block:
                close_old_connections()
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return ServicePrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        # Present so that DRF answers 401 (not 403) to a missing or bad key.
        return 'Bearer realm="api"'


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ServicePrincipal)
