"""The fast front guards itself: it serves the two hot endpoints only while the
configuration is the one it emulates.

`FastFront` copies a fixed stack: Django's middleware chain (respond.py adds their
headers, validate.py makes their checks), DRF's policies (the Bearer key from the memo,
no throttle, one JSON parser and renderer, the project's exception handler) and the two
views. A middleware, throttle or permission class added to the settings tomorrow would
silently not apply to what the front serves. So the configuration the front was written
for is pinned here, once, each value next to where its emulation lives; on any
difference the front serves nothing itself (Django answers every request; the 431 for
oversized headers stays, it is answered before routing on every path), one warning is
logged, and `manage.py check` reports aura.W002 (aura_orchestrator/checks.py).

Not pinned, because the front reads them per request, as Django's stack does:
ALLOWED_HOSTS and DEBUG (the host check), FORCE_SCRIPT_NAME, DISALLOWED_USER_AGENTS,
USE_X_FORWARDED_HOST, SECURE_SSL_REDIRECT, SECURE_PROXY_SSL_HEADER (validate.py);
SECURE_HSTS_*, SECURE_CONTENT_TYPE_NOSNIFF, SECURE_REFERRER_POLICY,
SECURE_CROSS_ORIGIN_OPENER_POLICY, X_FRAME_OPTIONS (respond.py);
DATA_UPLOAD_MAX_MEMORY_SIZE, AURA["MAX_HEADER_BYTES"], AURA_MAX_JSON_DEPTH.

The verdict is computed once per process, when `FastFront` is built, and kept: a request
pays one call returning a stored bool. `setting_changed` (tests' `override_settings`) and
`reset()` drop it; the next hot request computes it again.
"""

import logging
import weakref
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import request_finished, request_started, setting_changed
from django.dispatch import receiver
from django.urls import resolve

logger = logging.getLogger(__name__)

# --- What the front emulates --------------------------------------------------------------

# settings.MIDDLEWARE, exactly and in this order; what each one does to the two hot
# endpoints, and where the front does the same.
MIDDLEWARE = (
    # Its headers: respond.security_headers; its https redirect: validate.check_transport.
    "django.middleware.security.SecurityMiddleware",
    # No static file lives at the two paths: nothing to do.
    "aura_orchestrator.middleware.AsyncWhiteNoiseMiddleware",
    # Bearer authentication never touches the session: no cookie, no Vary.
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Disallowed user agents: validate.check_transport; Content-Length: respond.send_json.
    "django.middleware.common.CommonMiddleware",
    # DRF's views are csrf_exempt and the token is never read: nothing to do.
    "django.middleware.csrf.CsrfViewMiddleware",
    # A lazy request.user the views never read: nothing to do.
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Messages are never stored by an API call: nothing to do.
    "django.contrib.messages.middleware.MessageMiddleware",
    # X-Frame-Options: respond.xframe_headers.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The hot paths are in its EXCLUDE_URL_PREFIXES (checked: _csp_differences): no header.
    "csp.middleware.CSPMiddleware",
)

# Django settings the front does not read (it assumes these values).
DJANGO_SETTINGS = {
    "PREPEND_WWW": False,  # CommonMiddleware's redirect to www.: the front never redirects
}

# REST_FRAMEWORK, as DRF resolves it (classes and functions by dotted path).
REST_FRAMEWORK = {
    # validate.authenticate: the Bearer key from the memo.
    "DEFAULT_AUTHENTICATION_CLASSES": ("aura_orchestrator.tenancy.authentication.BearerApiKey",),
    # A key found is allowed: validate.authenticate delegates anything else.
    "DEFAULT_PERMISSION_CLASSES": ("aura_orchestrator.tenancy.authentication.HasApiKey",),
    # None: the pipeline's own rate limits apply on both paths.
    "DEFAULT_THROTTLE_CLASSES": (),
    "DEFAULT_THROTTLE_RATES": {"user": None, "anon": None},
    # app.py: api.jsonbody.parse_json_body, the parser's own function.
    "DEFAULT_PARSER_CLASSES": ("aura_orchestrator.api.jsonbody.JsonBodyParser",),
    # respond.dumps: orjson with DRF's encoder; compact, UTF-8, no NaN, as these flags ask.
    "DEFAULT_RENDERER_CLASSES": ("rest_framework.renderers.JSONRenderer",),
    "UNICODE_JSON": True,
    "COMPACT_JSON": True,
    "STRICT_JSON": True,
    # validate.check_transport(negotiate=True): the Accept values JSONRenderer satisfies.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "rest_framework.negotiation.DefaultContentNegotiation",
    # No versioning: nothing read from the URL, Accept or Host.
    "DEFAULT_VERSIONING_CLASS": None,
    # app.py: api.exceptions.error_reply, the handler's own function.
    "EXCEPTION_HANDLER": "aura_orchestrator.api.exceptions.exception_handler",
}

# Receivers of Django's request signals, which the front does not send: the reset and
# closing of connections and caches matter per Django request only (the front's db()
# units close their own connection).
REQUEST_SIGNALS = {
    "request_started": (
        "django.db.close_old_connections",
        "django.db.reset_queries",
    ),
    "request_finished": (
        "django.core.cache.close_caches",
        "django.core.handlers.base.reset_urlconf",
        "django.db.close_old_connections",
    ),
}

_VIEW_POLICIES = {  # view attribute -> the REST_FRAMEWORK default it takes
    "authentication_classes": "DEFAULT_AUTHENTICATION_CLASSES",
    "permission_classes": "DEFAULT_PERMISSION_CLASSES",
    "throttle_classes": "DEFAULT_THROTTLE_CLASSES",
    "parser_classes": "DEFAULT_PARSER_CLASSES",
    "renderer_classes": "DEFAULT_RENDERER_CLASSES",
    "content_negotiation_class": "DEFAULT_CONTENT_NEGOTIATION_CLASS",
    "versioning_class": "DEFAULT_VERSIONING_CLASS",
}
_ADRF_CHAIN = (
    "adrf.views.APIView",
    "rest_framework.views.APIView",
    "django.views.generic.base.View",
    "builtins.object",
)


@dataclass(frozen=True, kw_only=True)
class HotView:
    """One endpoint the front serves, and the view it emulates."""

    path: str
    view: str  # the class the path resolves to, undecorated, without as_view() arguments
    chain: tuple[str, ...]  # the classes it inherits from (its MRO after itself)
    own_names: dict[str, frozenset[str]]  # what each of our classes in the chain defines
    policies: dict[str, object]  # DRF attributes differing from REST_FRAMEWORK's defaults
    allowed_methods: tuple[str, ...] = ("POST", "OPTIONS")  # respond._ALLOW


HOT_VIEWS = (
    # app.py's _execute: api.views.execute_reply, the post() method's own function.
    HotView(
        path="/api/v1/operations/execute",
        view="aura_orchestrator.api.views.ExecuteView",
        chain=_ADRF_CHAIN,
        own_names={"aura_orchestrator.api.views.ExecuteView": frozenset({"post", "render_error"})},
        policies={},
    ),
    # app.py's _chat: gateway.views.chat_reply; Accept is not negotiated (negotiate=False).
    HotView(
        path="/v1/chat/completions",
        view="aura_orchestrator.gateway.views.ChatCompletionsView",
        chain=("aura_orchestrator.gateway.views.GatewayView", *_ADRF_CHAIN),
        own_names={
            "aura_orchestrator.gateway.views.ChatCompletionsView": frozenset(
                {"content_negotiation_class", "post"}
            ),
            "aura_orchestrator.gateway.views.GatewayView": frozenset({"render_error"}),
        },
        policies={
            "content_negotiation_class": "aura_orchestrator.gateway.views.AnswerAsOpenAIDoes"
        },
    ),
)

# --- Comparing -----------------------------------------------------------------------------


def dotted(value: object) -> object:
    """A class or function by its dotted path; lists of them as tuples; other values as
    they are."""
    if isinstance(value, list | tuple):
        return tuple(dotted(item) for item in value)
    if isinstance(value, type) or callable(value):
        name = getattr(value, "__qualname__", type(value).__qualname__)
        return f"{getattr(value, '__module__', '?')}.{name}"
    return value


def _middleware_differences() -> list[str]:
    configured = tuple(settings.MIDDLEWARE)
    if configured == MIDDLEWARE:
        return []
    added = [name for name in configured if name not in MIDDLEWARE]
    missing = [name for name in MIDDLEWARE if name not in configured]
    parts = [f"added {', '.join(added)}"] if added else []
    parts += [f"removed {', '.join(missing)}"] if missing else []
    return [f"MIDDLEWARE: {'; '.join(parts) or 'order changed'}"]


def _settings_differences() -> list[str]:
    from rest_framework.settings import api_settings

    found = [
        f"{name} is {getattr(settings, name)!r}, the front assumes {expected!r}"
        for name, expected in DJANGO_SETTINGS.items()
        if getattr(settings, name) != expected
    ]
    atomic = [alias for alias, db in settings.DATABASES.items() if db.get("ATOMIC_REQUESTS")]
    if atomic:  # Django refuses async views then; the front would not
        found.append(f"ATOMIC_REQUESTS is on for {', '.join(atomic)}")
    for name, expected in REST_FRAMEWORK.items():
        configured = dotted(getattr(api_settings, name))
        if configured != expected:
            found.append(
                f"REST_FRAMEWORK[{name!r}] is {configured!r}, the front emulates {expected!r}"
            )
    return found


def _csp_differences() -> list[str]:
    """django-csp adds its headers to every response but those of excluded prefixes; the
    front adds none, so each hot path must be excluded from each policy configured."""
    found = []
    for name in ("CONTENT_SECURITY_POLICY", "CONTENT_SECURITY_POLICY_REPORT_ONLY"):
        policy = getattr(settings, name, None) or {}
        prefixes = tuple(policy.get("EXCLUDE_URL_PREFIXES") or ())
        for hot in HOT_VIEWS:
            if policy and not hot.path.startswith(prefixes):
                found.append(f"{name} applies to {hot.path}: the front sends no such header")
    return found


def _live(ref: object) -> object:
    """A signal receiver from its entry: weak references (functions, methods) or itself."""
    return ref() if isinstance(ref, weakref.ref) else ref


def _signal_differences() -> list[str]:
    found = []
    for signal, name in (
        (request_started, "request_started"),
        (request_finished, "request_finished"),
    ):
        live = (_live(ref) for _key, ref, *_ in signal.receivers)
        connected = tuple(sorted(str(dotted(r)) for r in live if r is not None))
        if connected != REQUEST_SIGNALS[name]:
            extra = sorted(set(connected) - set(REQUEST_SIGNALS[name]))
            found.append(
                f"{name} has receivers the front does not run: {', '.join(extra) or connected}"
            )
    return found


def _view_differences(hot: HotView) -> list[str]:
    match = resolve(hot.path)
    func = match.func
    view = getattr(func, "view_class", None)
    if view is None or dotted(view) != hot.view:  # dotted(None) is None: not hot.view
        return [f"{hot.path} resolves to {dotted(func)}, the front emulates {hot.view}"]
    found = []
    # DRF's as_view() is Django's view function wrapped by csrf_exempt, nothing more (by
    # their code: functools.wraps copies names).
    inner = getattr(func, "__wrapped__", None)
    if (
        func.__code__.co_qualname != "csrf_exempt.<locals>._view_wrapper"
        or inner is None
        or inner.__code__.co_qualname != "View.as_view.<locals>.view"
        or hasattr(inner, "__wrapped__")
        or getattr(func, "initkwargs", None)
        or match.args
        or match.kwargs
    ):
        found.append(f"{hot.path}: the view is decorated, given arguments or parameters")
    chain = tuple(str(dotted(cls)) for cls in view.__mro__[1:])
    if chain != hot.chain:
        found.append(f"{hot.view} inherits from {', '.join(chain)}, not {', '.join(hot.chain)}")
    for cls in view.__mro__:
        name = str(dotted(cls))
        if name in hot.own_names or name.startswith("aura_orchestrator."):
            own = frozenset(n for n in vars(cls) if not n.startswith("__"))
            expected = hot.own_names.get(name, frozenset())
            if own != expected:
                found.append(f"{name} defines {', '.join(sorted(own ^ expected))}: not emulated")
    for attribute, default in _VIEW_POLICIES.items():
        emulated = hot.policies.get(attribute, REST_FRAMEWORK[default])
        configured = dotted(getattr(view, attribute))
        if configured != emulated:
            found.append(
                f"{hot.view}.{attribute} is {configured!r}, the front emulates {emulated!r}"
            )
    allowed = tuple(view().allowed_methods)
    if allowed != hot.allowed_methods:
        found.append(
            f"{hot.view} allows {', '.join(allowed)}, the front answers Allow: POST, OPTIONS"
        )
    return found


def differences() -> list[str]:
    """Every way the configuration differs from what the front emulates; empty when the
    front may serve. A comparison that fails counts as a difference."""
    found: list[str] = []
    parts = [
        ("the middleware", _middleware_differences),
        ("the settings", _settings_differences),
        ("the Content-Security-Policy", _csp_differences),
        ("the request signals", _signal_differences),
        *((hot.path, lambda hot=hot: _view_differences(hot)) for hot in HOT_VIEWS),
    ]
    for what, compare in parts:
        try:
            found += compare()
        except Exception as exc:
            found.append(f"{what} could not be compared: {exc!r}")
    return found


# --- The verdict ---------------------------------------------------------------------------

_serves: bool | None = None  # None: not computed since start-up or the last reset


def front_serves() -> bool:
    """May the front serve the hot endpoints itself? Computed once, then a stored bool;
    the first computation that finds differences logs them."""
    if _serves is None:
        return _decide()
    return _serves


def _decide() -> bool:
    global _serves
    found = differences()
    if found:
        logger.warning(
            "fast path off: the configuration differs from what the fast front emulates, "
            "so Django serves every request (see aura_orchestrator/fastpath/guard.py): %s",
            "; ".join(found),
        )
    _serves = not found
    return _serves


def reset() -> None:
    """Forget the verdict: the next hot request compares again."""
    global _serves
    _serves = None


@receiver(setting_changed)
def _setting_changed(**kwargs) -> None:
    reset()
