"""The fast front guards itself (aura_orchestrator/fastpath/guard.py): with any
configuration other than the one it emulates, Django serves every request to the two hot
endpoints, a warning names the differences, and `manage.py check` reports them.

The verdict is computed once and kept; `setting_changed` drops it (so the `settings`
fixture and `override_settings` are seen at the next request), and these tests call
`guard.reset()` around each test and after changing a view's attributes, which no
signal reports."""

import logging

import httpx
import pytest
from asgiref.sync import markcoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.urls import path
from django.views.decorators.cache import never_cache
from rest_framework.throttling import BaseThrottle

from aura_orchestrator import asgi
from aura_orchestrator.api.views import ExecuteView
from aura_orchestrator.checks import fast_front_matches_configuration
from aura_orchestrator.fastpath import app as front_app
from aura_orchestrator.fastpath import guard
from aura_orchestrator.fastpath.app import FastFront
from aura_orchestrator.gateway.views import ChatCompletionsView
from tests.pipeline.helpers import EXECUTE, body

CHAT = "/v1/chat/completions"
STAMP = "X-Test-Stamp"


@pytest.fixture(autouse=True)
def _fresh_verdict():
    guard.reset()
    yield
    guard.reset()  # after monkeypatch has put the views back (set up before it)


def stamp_middleware(get_response):
    """A middleware added 'tomorrow': marks every response Django's chain produced."""

    async def middleware(request):
        response = await get_response(request)
        response[STAMP] = "django"
        return response

    return markcoroutinefunction(middleware)


stamp_middleware.async_capable = True
stamp_middleware.sync_capable = False


class RefuseEveryone(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        return False

    def wait(self) -> float:
        return 7


def _on_request_finished(**kwargs) -> None:
    pass


# A URL configuration for the tests below (ROOT_URLCONF="tests.fastpath.test_guard").
urlpatterns = [
    path("api/v1/operations/execute", never_cache(ExecuteView.as_view())),
    path("v1/chat/completions", ChatCompletionsView.as_view(throttle_classes=[RefuseEveryone])),
]


def _aura_warnings() -> list[str]:
    """What `manage.py check` reports about the front (its check, called alone: the
    other checks read the database)."""
    return [m.msg for m in fast_front_matches_configuration() if m.id == "aura.W002"]


# --- The comparison and the system check --------------------------------------------------


def test_the_stock_configuration_passes_the_guard(caplog):
    """No difference, no warning, no check message: the front serves."""
    with caplog.at_level(logging.WARNING, logger=guard.__name__):
        assert guard.differences() == []
        assert guard.front_serves() is True
    assert caplog.records == []
    assert _aura_warnings() == []


def test_the_guarded_paths_are_the_ones_the_front_intercepts():
    assert {hot.path for hot in guard.HOT_VIEWS} == set(front_app._INTERCEPTED)


def _rest_framework(settings, **changes) -> dict:
    return {**settings.REST_FRAMEWORK, **changes}


CHANGES = [
    # (what, settings changes (callable of the current settings), words the report names)
    (
        "a middleware added",
        lambda s: {"MIDDLEWARE": [*s.MIDDLEWARE, f"{__name__}.stamp_middleware"]},
        f"MIDDLEWARE: added {__name__}.stamp_middleware",
    ),
    (
        "a middleware removed",
        lambda s: {"MIDDLEWARE": s.MIDDLEWARE[:-1]},
        "removed csp.middleware.CSPMiddleware",
    ),
    (
        "a Content-Security-Policy on the API",
        lambda s: {
            "CONTENT_SECURITY_POLICY": {
                **s.CONTENT_SECURITY_POLICY,
                "EXCLUDE_URL_PREFIXES": ("/api/v1/",),
            }
        },
        "CONTENT_SECURITY_POLICY applies to /v1/chat/completions",
    ),
    (
        "the middleware reordered",
        lambda s: {"MIDDLEWARE": list(reversed(s.MIDDLEWARE))},
        "MIDDLEWARE: order changed",
    ),
    (
        "a throttle class",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s, DEFAULT_THROTTLE_CLASSES=["rest_framework.throttling.UserRateThrottle"]
            )
        },
        "DEFAULT_THROTTLE_CLASSES",
    ),
    (
        "a throttle rate",
        lambda s: {"REST_FRAMEWORK": _rest_framework(s, DEFAULT_THROTTLE_RATES={"user": "9/m"})},
        "DEFAULT_THROTTLE_RATES",
    ),
    (
        "another permission class",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s, DEFAULT_PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"]
            )
        },
        "DEFAULT_PERMISSION_CLASSES",
    ),
    (
        "another authentication class",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s,
                DEFAULT_AUTHENTICATION_CLASSES=[
                    "rest_framework.authentication.SessionAuthentication"
                ],
            )
        },
        "DEFAULT_AUTHENTICATION_CLASSES",
    ),
    (
        "another parser",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s, DEFAULT_PARSER_CLASSES=["rest_framework.parsers.JSONParser"]
            )
        },
        "DEFAULT_PARSER_CLASSES",
    ),
    (
        "another renderer",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s,
                DEFAULT_RENDERER_CLASSES=[
                    "rest_framework.renderers.JSONRenderer",
                    "rest_framework.renderers.BrowsableAPIRenderer",
                ],
            )
        },
        "DEFAULT_RENDERER_CLASSES",
    ),
    (
        "another negotiation",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s,
                DEFAULT_CONTENT_NEGOTIATION_CLASS="aura_orchestrator.gateway.views.AnswerAsOpenAIDoes",
            )
        },
        "DEFAULT_CONTENT_NEGOTIATION_CLASS",
    ),
    (
        "DRF's own exception handler",
        lambda s: {
            "REST_FRAMEWORK": _rest_framework(
                s, EXCEPTION_HANDLER="rest_framework.views.exception_handler"
            )
        },
        "EXCEPTION_HANDLER",
    ),
    (
        "pretty JSON",
        lambda s: {"REST_FRAMEWORK": _rest_framework(s, COMPACT_JSON=False)},
        "COMPACT_JSON",
    ),
    ("a www. redirect", lambda s: {"PREPEND_WWW": True}, "PREPEND_WWW"),
    (
        "atomic requests",
        lambda s: {
            "DATABASES": {
                **s.DATABASES,
                "default": {**s.DATABASES["default"], "ATOMIC_REQUESTS": True},
            }
        },
        "ATOMIC_REQUESTS is on for default",
    ),
    (
        "the hot paths routed differently",
        lambda s: {"ROOT_URLCONF": __name__},
        "/api/v1/operations/execute: the view is decorated",
    ),
]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES:UserWarning")
@pytest.mark.parametrize(("what", "changes", "named"), CHANGES, ids=[c[0] for c in CHANGES])
def test_any_difference_is_named_and_turns_the_front_off(what, changes, named, settings):
    for name, value in changes(settings).items():
        setattr(settings, name, value)  # sends setting_changed: the verdict is dropped
    found = guard.differences()
    assert any(named in difference for difference in found), found
    assert guard.front_serves() is False
    (message,) = _aura_warnings()
    assert named in message


def test_a_route_with_as_view_arguments_is_named(settings):
    settings.ROOT_URLCONF = __name__
    found = guard.differences()
    assert f"{CHAT}: the view is decorated, given arguments or parameters" in found


def test_the_views_own_attributes_and_methods_are_compared(monkeypatch):
    """What a restart with new defaults does to the views (DRF binds its defaults to the
    class at import), or a view that overrides DRF's machinery."""
    monkeypatch.setattr(ExecuteView, "throttle_classes", [RefuseEveryone])
    monkeypatch.setattr(ChatCompletionsView, "initial", lambda self, request: None, raising=False)
    found = guard.differences()
    assert any("ExecuteView.throttle_classes" in d and "RefuseEveryone" in d for d in found)
    assert any("ChatCompletionsView defines initial" in d for d in found)


def test_request_signal_receivers_the_front_does_not_send_are_named():
    request_finished.connect(_on_request_finished)
    try:
        found = guard.differences()
    finally:
        request_finished.disconnect(_on_request_finished)
    assert found == [
        f"request_finished has receivers the front does not run: {__name__}._on_request_finished"
    ]


def test_the_check_is_silent_when_the_front_is_off(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.stamp_middleware"]
    settings.AURA = {**settings.AURA, "FAST_PATH": False}
    assert _aura_warnings() == []


# --- The front, on a difference ------------------------------------------------------------


async def test_oversized_headers_are_still_refused_before_routing(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.stamp_middleware"]
    called, sent = [], []

    async def django(scope, receive, send):
        called.append(scope["path"])

    async def send(message):
        sent.append(message)

    front = FastFront(django)
    big = [(b"x-big", b"x" * (settings.AURA["MAX_HEADER_BYTES"] + 1))]
    await front({"type": "http", "method": "POST", "path": EXECUTE, "headers": big}, None, send)
    assert sent[0]["status"] == 431 and called == []


def test_the_warning_is_logged_once_at_start_up(settings, caplog):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.stamp_middleware"]
    with caplog.at_level(logging.WARNING, logger=guard.__name__):
        FastFront(ASGIHandler())
        assert guard.front_serves() is False
        assert guard.front_serves() is False
    (record,) = caplog.records
    assert f"MIDDLEWARE: added {__name__}.stamp_middleware" in record.getMessage()


class Counting:
    """Django's application, counting the requests the front hands to it."""

    def __init__(self, app) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def _client(app, api_key) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {api_key.raw_key}"},
        timeout=60,
    )


CHAT_BODY = {"model": "sim-gpt", "messages": [{"role": "user", "content": "Name a colour"}]}


@pytest.mark.django_db(transaction=True)
async def test_an_added_middleware_applies_to_every_hot_request(
    settings, api_key, provider, fake_upstream, monkeypatch
):
    """Django's chain is built with the new middleware, the front in front of it: each
    request to both endpoints, also once the key is in the memo, carries the middleware's
    header; the configuration is compared once, not per request."""
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.stamp_middleware"]
    compared = []
    differences = guard.differences
    monkeypatch.setattr(guard, "differences", lambda: compared.append(1) or differences())
    django = Counting(ASGIHandler())
    async with _client(FastFront(django), api_key) as client:
        responses = [
            await client.post(EXECUTE, json=body("guard-1")),
            await client.post(EXECUTE, json=body("guard-1")),
            await client.post(CHAT, json=CHAT_BODY),
            await client.post(CHAT, json=CHAT_BODY),
        ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.headers[STAMP] == "django"
    assert django.paths == [EXECUTE, EXECUTE, CHAT, CHAT]
    assert compared == [1]


@pytest.mark.django_db(transaction=True)
async def test_with_the_stock_configuration_the_front_serves_itself(
    api_key, provider, fake_upstream
):
    """The control: the same requests, the first of each filling the memo through Django,
    the second answered by the front (no middleware of Django's ran for it)."""
    django = Counting(asgi.django_application)
    async with _client(FastFront(django), api_key) as client:
        for target, payload in ((EXECUTE, body("guard-2")), (CHAT, CHAT_BODY)):
            assert (await client.post(target, json=payload)).status_code == 200
            assert (await client.post(target, json=payload)).status_code == 200
    assert django.paths == [EXECUTE], "the gateway found the key memoized already"


@pytest.mark.django_db(transaction=True)
async def test_a_throttle_on_the_views_refuses_every_hot_request(
    api_key, provider, fake_upstream, monkeypatch
):
    """The running application (asgi.application): once the views carry a throttle, the
    front hands every request to Django, whose throttle answers 429."""
    async with _client(asgi.application, api_key) as client:
        assert (await client.post(EXECUTE, json=body("guard-3"))).status_code == 200  # memo
        monkeypatch.setattr(ExecuteView, "throttle_classes", [RefuseEveryone])
        monkeypatch.setattr(ChatCompletionsView, "throttle_classes", [RefuseEveryone])
        guard.reset()  # a restart: no signal reports a class attribute
        execute = await client.post(EXECUTE, json=body("guard-3"))
        chat = await client.post(CHAT, json=CHAT_BODY)
    assert execute.status_code == chat.status_code == 429
    assert execute.json()["error_code"] == "rate_limited"
    assert chat.json()["error"]["code"] == "rate_limited"
    assert execute.headers["retry-after"] == chat.headers["retry-after"] == "7"
