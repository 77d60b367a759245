"""Is this request for the fast path? Transport and authentication only.

Every check here either accepts exactly what Django's stack (middleware, DRF's
negotiation and authentication) would accept, or raises `Delegate`: Django then serves
the request and answers whatever it answers. When in doubt, delegate: it costs a
millisecond or two, never a wrong answer. The body is not judged here: both paths parse
it with the same parser (`api/bodies.py`, `gateway/translate.py`), so the fast front
answers a refused body itself (`app.py`).
"""

from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from aura_orchestrator.caching import config_cache
from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.selectors import api_key_authenticate


class Delegate(Exception):
    """Not for the fast path: hand the request to Django (its body replayed)."""


# --- Headers and transport -----------------------------------------------------------------


class Headers(dict):
    """Request headers as Django reads them (`request.headers`, `META`): names are
    case-insensitive, names with an underscore are dropped (Django's guard against
    spoofing), repeated headers are joined by commas, values are latin-1."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)


def request_headers(scope: dict) -> Headers:
    headers = Headers()
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if "_" in name:
            continue
        value = raw_value.decode("latin-1")
        previous = dict.get(headers, name)
        dict.__setitem__(headers, name, value if previous is None else f"{previous},{value}")
    return headers


def body_limit() -> int:
    """Bodies above Django's limit go to Django (which answers 413)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return 10 * 1024 * 1024 if limit is None else limit


_JSON_PARAMS = ("", "charset=utf-8", "charset=utf8")
_ACCEPTED = frozenset(("*/*", "application/*", "application/json"))


def check_transport(scope: dict, headers: Headers, *, negotiate: bool = True) -> int:
    """What Django's middleware and DRF check before the view: host, scheme redirect,
    script prefix, content negotiation (`negotiate`: the gateway answers JSON or SSE
    whatever `Accept` says, as OpenAI does), a JSON content type. Returns the body's
    length."""
    if scope.get("root_path") or settings.FORCE_SCRIPT_NAME or scope.get("query_string"):
        raise Delegate("script prefix or query string")
    if settings.DISALLOWED_USER_AGENTS or settings.USE_X_FORWARDED_HOST:
        raise Delegate("user-agent or forwarded-host rules")
    host = headers.get("host")
    if not host:
        raise Delegate("no Host header")
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed):
        raise Delegate("host not allowed")
    if settings.SECURE_SSL_REDIRECT and not is_secure(scope, headers):
        raise Delegate("https redirect")
    content_type = headers.get("content-type")
    if content_type is None:
        raise Delegate("no content type")
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json" or (
        params.strip().lower().replace(" ", "").replace('"', "") not in _JSON_PARAMS
    ):
        raise Delegate("not JSON")
    accept = headers.get("accept")
    if (
        negotiate
        and accept is not None
        and not any(part.partition(";")[0].strip() in _ACCEPTED for part in accept.split(","))
    ):
        raise Delegate("content negotiation")
    length = headers.get("content-length")
    if length is None or not length.isdigit() or not 0 < int(length) <= body_limit():
        raise Delegate("content length")
    return int(length)


def is_secure(scope: dict, headers: Headers) -> bool:
    """`request.is_secure()`: SECURE_PROXY_SSL_HEADER's header when set, else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        if meta_name.startswith("HTTP_"):
            value = headers.get(meta_name[5:].replace("_", "-"))
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def authenticate(headers: Headers) -> ApiKey:
    """The Bearer key from the per-process memo, never from the database (this runs on
    the event loop): anything else, a memo miss included, is Django's."""
    header = headers.get("authorization")
    if not header:
        raise Delegate("no Authorization")
    scheme, _, raw_key = header.partition(" ")
    raw_key = raw_key.strip()
    if scheme.lower() != "bearer" or not raw_key:
        raise Delegate("not a Bearer key")
    with config_cache.memo_only():
        try:
            api_key = api_key_authenticate(raw_key=raw_key)
        except config_cache.MemoMiss:
            raise Delegate("key not in the memo") from None
    if api_key is None:
        raise Delegate("unknown key")
    return api_key
