from django.urls import path

from aura_orchestrator.api import optimize_views, statistics_views, views

app_name = "api"

urlpatterns = [
    path("operations/execute", views.ExecuteView.as_view(), name="execute"),
    path(
        "sessions/<str:session_id>/budget", views.SessionBudgetView.as_view(), name="session-budget"
    ),
    path(
        "sessions/<str:session_id>/statistics",
        statistics_views.SessionStatisticsView.as_view(),
        name="session-statistics",
    ),
    path("sessions/<str:session_id>", views.SessionView.as_view(), name="session"),
    path("usage", views.UsageView.as_view(), name="usage"),
    path("statistics", statistics_views.StatisticsView.as_view(), name="statistics"),
    path("presets/", views.PresetListView.as_view(), name="presets"),
    path("presets/<str:operation_type>", views.PresetDetailView.as_view(), name="preset"),
    path("optimize", optimize_views.OptimizeView.as_view(), name="optimize"),
    path("optimize/explain", optimize_views.ExplainView.as_view(), name="optimize-explain"),
    path("estimate", optimize_views.EstimateView.as_view(), name="estimate"),
]
