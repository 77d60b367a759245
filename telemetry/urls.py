"""Staff dashboards, mounted at /dashboard/."""

from django.urls import path

from telemetry import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("sessions/", views.session_list, name="sessions"),
    path("sessions/<int:pk>/", views.session_detail, name="session"),
    path("spend/", views.spend_limit_list, name="spend"),
    path("operations/<uuid:operation_id>/", views.operation_detail, name="operation"),
]
