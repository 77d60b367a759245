from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from aura_orchestrator import metrics
from aura_orchestrator.api import health

admin.site.site_header = "Aura Orchestrator"
admin.site.site_title = "Aura Orchestrator"
admin.site.index_title = "Operations console"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("dashboard/", include("telemetry.urls")),
    path("api/v1/", include("aura_orchestrator.api.urls")),
    path("v1/", include("aura_orchestrator.gateway.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Split: its setup script is a file (?script), not inline, for the CSP (settings.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler400 = "aura_orchestrator.api.exceptions.bad_request"
handler404 = "aura_orchestrator.api.exceptions.not_found"
handler500 = "aura_orchestrator.api.exceptions.server_error"
