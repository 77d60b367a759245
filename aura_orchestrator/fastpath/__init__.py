"""The fast ASGI front: the two hot endpoints without Django's request stack.

Django's ASGI handler, middleware chain and DRF's view machinery cost about 3.4 ms of
CPU per request on the benchmark machine (1.9 ms for a bare `/healthz`, 1.5 ms more for
adrf, parsing, the serializer and rendering: bench/README.md), more than the rest of the
hot path. `FastFront` wraps Django's application and serves `POST
/api/v1/operations/execute` and `POST /v1/chat/completions` itself when the transport is
clean and the key is already in the per-process memo; everything else, and any doubt
about those, goes to Django with the body replayed. Bodies are parsed by the views' own
parsers (`api/bodies.py`, `gateway/translate.py`) and a refusal is rendered through the
one error table, so both paths answer alike; so are the bodies and headers of answers,
built by the views' own functions.

    app.py       routing, reading the body, delegation, the disconnect watch
    validate.py  transport checks and the Bearer key from the memo
    respond.py   JSON and SSE responses with the headers Django's stack would add
    guard.py     the configuration all this emulates; on any other, Django serves all
"""

from django.conf import settings


def wrap(django_app):
    """Django's application behind the fast front, or alone when AURA["FAST_PATH"] is off."""
    if not settings.AURA.get("FAST_PATH", True):
        return django_app
    from aura_orchestrator.fastpath.app import FastFront

    return FastFront(django_app)
