from django.urls import path

from aura_orchestrator.api import views

app_name = "api"

urlpatterns = [
    path("operations/execute", views.ExecuteView.as_view(), name="execute"),
    path(
        "sessions/<str:session_id>/budget", views.SessionBudgetView.as_view(), name="session-budget"
    ),
    path("sessions/<str:session_id>", views.SessionView.as_view(), name="session"),
    path("presets/", views.PresetListView.as_view(), name="presets"),
    path("presets/<str:operation_type>", views.PresetDetailView.as_view(), name="preset"),
]
