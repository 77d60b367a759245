"""ASGI entry point: `python manage.py serve` runs it under uvicorn."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura_orchestrator.settings")

application = get_asgi_application()
