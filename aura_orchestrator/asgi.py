"""ASGI entry point: `python manage.py serve` runs it under uvicorn.

`application` is Django's ASGI application behind the fast front for the two hot
endpoints (aura_orchestrator/fastpath; AURA_FAST_PATH=0 turns it off);
`django_application` is Django's alone.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")

django_application = get_asgi_application()


def _front(app):
    from aura_orchestrator.fastpath import wrap  # imports models: after Django's setup

    return wrap(app)


def _traced(app):
    """OpenTelemetry export, when an OTLP endpoint is set: started once per worker process
    (aura_orchestrator/tracing.py), what is queued sent at the lifespan's shutdown (`serve`
    turns the lifespan on then: uvicorn ends its workers by re-raising SIGTERM, which no
    atexit handler survives)."""
    from aura_orchestrator import tracing

    return app if tracing.start() is None else tracing.FlushAtShutdown(app)


application = _traced(_front(django_application))


def _tune_gc() -> None:
    """Web workers (`serve` sets AURA_SERVER_GC): the objects of start-up (Django, the
    apps, the memo) move out of the collector's sight, and young collections run less
    often. With hundreds of requests in flight, every collection otherwise walks all of
    them: measured side by side, 10-16 % less CPU per request (bench/README.md)."""
    if os.environ.get("AURA_SERVER_GC") != "1":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


_tune_gc()


def _sweep_journals() -> None:
    """Web workers (`serve` sets AURA_WEB_WORKER): finishes a killed worker journaled
    while the database was away are replayed by whichever worker finds them
    (aura_orchestrator/store/journal.py)."""
    if os.environ.get("AURA_WEB_WORKER") != "1":
        return
    from aura_orchestrator.store.journal import sweep_orphans_in_background

    sweep_orphans_in_background()


_sweep_journals()
