"""Liveness and readiness, outside the API's authentication."""

from django.db import connection
from django.http import JsonResponse

from aura_orchestrator.dbhealth import purge_django_pool


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready when the database answers. A failure may only mean a pooled connection that
    died with a database restart: the pool's dead connections are replaced and the check
    is tried once more, so readiness follows the database within a request."""
    for last_try in (False, True):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception as exc:  # any failure to reach the database means not ready
            if not connection.in_atomic_block:  # (tests run inside one)
                connection.close()  # a dead pooled connection goes back to be discarded
            if last_try:
                body = {"status": "unavailable", "database": type(exc).__name__}
                return JsonResponse(body, status=503)
            purge_django_pool()
        else:
            return JsonResponse({"status": "ready", "database": "ok"})
    raise AssertionError("unreachable")
