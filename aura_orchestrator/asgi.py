"""ASGI entry point: `python manage.py serve` runs it under uvicorn.

`application` is Django's ASGI application behind the fast front for the two hot
endpoints (aura_orchestrator/fastpath; AURA_FAST_PATH=0 turns it off);
`django_application` is Django's alone.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")

django_application = get_asgi_application()


def _front(app):
    from aura_orchestrator.fastpath import wrap  # imports models: after Django's setup

    return wrap(app)


application = _front(django_application)
