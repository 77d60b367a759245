"""Is this request clean enough for the fast path? Headers, authentication, bodies.

Every check here either accepts exactly what Django's stack (middleware, DRF, the
serializers, `chat_call_from`) would accept, producing the same values, or raises
`Delegate`: Django then serves the request and answers whatever it answers, errors
included. When in doubt, delegate: it costs a millisecond or two, never a wrong answer.
"""

import re
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from rest_framework.exceptions import ValidationError
from rest_framework.fields import IntegerField

from aura_orchestrator import pipeline
from aura_orchestrator.api.jsonbody import schema_problem
from aura_orchestrator.api.serializers import (
    MAX_PROMPT_CHARS,
    BudgetConstraintSerializer,
    CustomPresetSerializer,
    ExecuteInputSerializer,
)
from aura_orchestrator.api.views import operation_request_from
from aura_orchestrator.caching import config_cache
from aura_orchestrator.gateway.translate import ChatCall, chat_call_from
from aura_orchestrator.tenancy.models import ApiKey
from aura_orchestrator.tenancy.selectors import api_key_authenticate
from budgets.validators import SESSION_ID_MAX_LENGTH, is_valid_session_id
from presets.operation_types import parse_operation_type


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


# --- The execute body (ExecuteInputSerializer, field by field) -----------------------------

# The serializers' own fields: their bounds and lengths are read from them, never copied.
_BUDGET_FIELDS = BudgetConstraintSerializer().fields
_PRESET_FIELDS = CustomPresetSerializer().fields
_EXECUTE_FIELDS = ExecuteInputSerializer().fields
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def _text(value: object, *, max_length: int, trim: bool, allow_blank: bool) -> str:
    """A DRF CharField: strings only here (DRF also turns numbers into text)."""
    if type(value) is not str:
        raise Delegate("not a string")
    if trim:
        value = value.strip()
    if not value:
        if allow_blank:
            return ""
        raise Delegate("blank")
    if len(value) > max_length or "\x00" in value:
        raise Delegate("too long or NUL")
    # Lone surrogates cannot come out of orjson (it refuses them), so DRF's surrogate
    # check cannot fail here.
    return value


def _int(value: object, *, low: int | None = None, high: int | None = None) -> int:
    """A DRF IntegerField: JSON integers only here (DRF also takes "5" and 5.0)."""
    if type(value) is not int:
        raise Delegate("not an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        raise Delegate("out of range")
    return value


def _float(value: object, *, low: float | None = None, high: float | None = None) -> float:
    """A DRF FloatField: JSON numbers only here (DRF also takes "0.5" and true)."""
    if type(value) is not int and type(value) is not float:
        raise Delegate("not a number")
    value = float(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise Delegate("out of range")
    return value


def _number(field):
    """A rule for a DRF IntegerField or FloatField, within that field's own bounds."""
    check = _int if isinstance(field, IntegerField) else _float
    return lambda v: check(v, low=field.min_value, high=field.max_value)


def _nullable(rule):
    return lambda v: None if v is None else rule(v)


def _bool(value: object) -> bool:
    """A DRF BooleanField: JSON booleans only here (DRF also takes "yes", 1, ...)."""
    if type(value) is not bool:
        raise Delegate("not a boolean")
    return value


def _slug(value: object, *, max_length: int) -> str:
    text = _text(value, max_length=max_length, trim=True, allow_blank=False)
    if _SLUG.fullmatch(text) is None:
        raise Delegate("not a slug")
    return text


def _money(name: str):
    field = _BUDGET_FIELDS[name]

    def check(value: object):
        try:  # DRF's own DecimalField: digits, places, minimum and quantization
            return field.run_validation(value)
        except ValidationError:
            raise Delegate(name) from None

    return check


# name -> rule, per nested serializer; a name not here is delegated (DRF would ignore it:
# a field added to a serializer but not here must never be silently dropped).
BUDGET_CONSTRAINT_RULES = {
    "max_tokens_per_operation": _nullable(_number(_BUDGET_FIELDS["max_tokens_per_operation"])),
    "max_cost_per_operation": _money("max_cost_per_operation"),
    "max_tokens_per_session": _nullable(_number(_BUDGET_FIELDS["max_tokens_per_session"])),
    "max_cost_per_session": _money("max_cost_per_session"),
    "enforce_hard_limits": _bool,
}
CUSTOM_PRESET_RULES = {name: _number(field) for name, field in _PRESET_FIELDS.items()}


def _nested(rules: dict, value: object, **defaults) -> dict:
    if type(value) is not dict:
        raise Delegate("not an object")
    data = dict(defaults)
    for name, item in value.items():
        rule = rules.get(name)
        if rule is None:
            raise Delegate(f"unknown field {name[:64]}")
        data[name] = rule(item)
    return data


def _providers(value: object) -> list[str]:
    if type(value) is not list or not 1 <= len(value) <= _EXECUTE_FIELDS["providers"].max_length:
        raise Delegate("providers")
    child = _EXECUTE_FIELDS["providers"].child.max_length
    return [_slug(item, max_length=child) for item in value]


def _response_schema(value: object) -> dict:
    if type(value) is not dict or schema_problem(value) is not None:  # the serializer's check
        raise Delegate("response_schema")
    return value


# The optional fields of ExecuteInputSerializer (all allow null); the three required ones
# are checked first.
EXECUTE_RULES = {
    "system_prompt": lambda v: _text(v, max_length=MAX_PROMPT_CHARS, trim=False, allow_blank=True),
    "enable_cache": _bool,
    "cache_ttl_seconds": _number(_EXECUTE_FIELDS["cache_ttl_seconds"]),
    "budget_constraint": lambda v: _nested(BUDGET_CONSTRAINT_RULES, v, enforce_hard_limits=True),
    "budget": lambda v: _slug(v, max_length=_EXECUTE_FIELDS["budget"].max_length),
    "custom_preset": lambda v: _nested(CUSTOM_PRESET_RULES, v),
    "providers": _providers,
    "model": lambda v: _text(
        v, max_length=_EXECUTE_FIELDS["model"].max_length, trim=True, allow_blank=False
    ),
    "response_schema": _response_schema,
}
REQUIRED_FIELDS = ("session_id", "operation_type", "prompt")


def execute_data(body: object) -> dict:
    """`ExecuteInputSerializer(data=body).validated_data` for a body it accepts; Delegate
    for anything it might refuse, and for any field it does not know."""
    if type(body) is not dict:
        raise Delegate("not an object")
    session_id = _text(
        body.get("session_id"), max_length=SESSION_ID_MAX_LENGTH, trim=True, allow_blank=False
    )
    if not is_valid_session_id(session_id):
        raise Delegate("session_id")
    raw_type = body.get("operation_type")
    if type(raw_type) is not str or not raw_type.strip():
        raise Delegate("operation_type")
    operation_type = parse_operation_type(raw_type)  # OperationTypeField's own parsing
    if operation_type is None:
        raise Delegate("operation_type")
    data: dict = {
        "session_id": session_id,
        "operation_type": operation_type,
        "prompt": _text(
            body.get("prompt"), max_length=MAX_PROMPT_CHARS, trim=False, allow_blank=False
        ),
        "enable_cache": None,  # the serializer's default
    }
    if len(body) > 3:
        for name, value in body.items():
            if name in REQUIRED_FIELDS:
                continue
            rule = EXECUTE_RULES.get(name)
            if rule is None:
                raise Delegate(f"unknown field {name[:64]}")
            data[name] = None if value is None else rule(value)
    if data.get("budget") and data.get("budget_constraint"):
        raise Delegate("budget and budget_constraint")
    return data


def execute_request(body: object) -> pipeline.OperationRequest:
    """The pipeline's request for an execute body, built by the view's own function."""
    return operation_request_from(execute_data(body))


# --- The chat-completions body ---------------------------------------------------------------


def chat_call(body: object, headers: Headers, api_key: ApiKey) -> ChatCall:
    """`chat_call_from` as the view calls it; any refusal is Django's to render."""
    if type(body) is not dict:
        raise Delegate("not an object")
    try:
        return chat_call_from(
            body=body, headers=headers, default_session=f"gateway-{api_key.prefix}"
        )
    except Exception:
        raise Delegate("chat_call_from refused") from None
