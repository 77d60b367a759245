"""Statistics endpoints: overall (scoped to the key's project) and per session."""

from dataclasses import asdict
from datetime import UTC, datetime, time

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aura_orchestrator import errors
from aura_orchestrator.api import openapi
from aura_orchestrator.api.render import jsonable
from aura_orchestrator.api.views import checked_session_id
from budgets.selectors import session_get
from presets.operation_types import OperationType, parse_operation_type
from telemetry.selectors import statistics, telemetry_session_exists

_ISO_HINT = "an ISO 8601 date or date-time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z"


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (naive means UTC; a date
    means its midnight). A '+' of an offset arrives as a space when not URL-encoded."""
    text = value.strip()
    for candidate in dict.fromkeys((text, text.replace(" ", "+"))):
        try:
            moment = parse_datetime(candidate)
            if moment is None:
                day = parse_date(candidate)
                moment = datetime.combine(day, time.min) if day else None
        except ValueError:  # well formed but impossible, e.g. month 13
            moment = None
        if moment is None:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if not 1970 <= moment.year <= 9000:
            raise serializers.ValidationError("must be between the years 1970 and 9000.")
        return moment.astimezone(UTC)
    raise serializers.ValidationError(f"'{text[:64]}' is not {_ISO_HINT}.")


class StatisticsFilterSerializer(serializers.Serializer):
    since = serializers.CharField(required=False, help_text=f"Inclusive start: {_ISO_HINT}.")
    until = serializers.CharField(required=False, help_text=f"Exclusive end: {_ISO_HINT}.")
    provider = serializers.CharField(required=False, max_length=64)
    model = serializers.CharField(required=False, max_length=200)
    operation_type = serializers.CharField(required=False, max_length=64)

    def validate_since(self, value: str) -> datetime:
        return parse_instant(value)

    def validate_until(self, value: str) -> datetime:
        return parse_instant(value)

    def validate_operation_type(self, value: str) -> str:
        operation_type = parse_operation_type(value)
        if operation_type is None:
            known = ", ".join(OperationType.values)
            raise serializers.ValidationError(f"unknown operation type; one of: {known}.")
        return operation_type.value

    def validate(self, attrs: dict) -> dict:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since > until:
            raise serializers.ValidationError({"since": "must not be later than until."})
        return attrs


class StatisticsSerializer(serializers.Serializer):
    """The contract's statistics; money as 6-decimal strings, latencies in ms."""

    total_operations = serializers.IntegerField()
    successful_operations = serializers.IntegerField()
    failed_operations = serializers.IntegerField()
    cache_hits = serializers.IntegerField()
    cache_hit_rate = serializers.FloatField(help_text="0..1")
    total_tokens_in = serializers.IntegerField()
    total_tokens_out = serializers.IntegerField()
    total_retries = serializers.IntegerField()
    total_estimated_cost = serializers.CharField(help_text="USD, 6 decimals")
    total_cache_savings = serializers.CharField(
        help_text="USD, 6 decimals: what prompt caching saved against plain input prices "
        "(cache reads cheaper, minus cache writes dearer); negative when writes cost more."
    )
    average_latency_ms = serializers.FloatField()
    p50_latency_ms = serializers.FloatField()
    p95_latency_ms = serializers.FloatField()
    p99_latency_ms = serializers.FloatField()
    operations_by_provider = serializers.DictField(child=serializers.IntegerField())
    operations_by_type = serializers.DictField(child=serializers.IntegerField())
    cost_by_provider = serializers.DictField(child=serializers.CharField(), help_text="USD")
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field, not Field.source
        choices=["raw", "rollup"],
        help_text="raw: exact percentiles over every operation; rollup: long range served "
        "from hourly rollups, totals exact, percentiles approximate.",
    )
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)


FILTER_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="Inclusive start (ISO 8601)."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Exclusive end (ISO 8601)."),
    OpenApiParameter("provider", OpenApiTypes.STR, description="Provider name."),
    OpenApiParameter("model", OpenApiTypes.STR, description="Model name."),
    OpenApiParameter(
        "operation_type", OpenApiTypes.STR, enum=OperationType.values, description="Type."
    ),
]


def _filters(request) -> dict:
    serializer = StatisticsFilterSerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StatisticsView(APIView):
    @extend_schema(
        parameters=[*FILTER_PARAMETERS, *openapi.ERROR_HEADERS],
        responses={200: StatisticsSerializer, **openapi.rest_errors(400)},
        tags=["statistics"],
    )
    def get(self, request):
        """Statistics of this project's operations in [since, until), optionally narrowed
        to a provider, model or operation type. Exact percentiles over raw operations;
        long or very large ranges are served from hourly rollups (`source`)."""
        result = statistics(project_id=request.user.project.pk, **_filters(request))
        return Response(jsonable(asdict(result)))


class SessionStatisticsView(APIView):
    @extend_schema(
        parameters=[openapi.SESSION_ID, *FILTER_PARAMETERS, *openapi.ERROR_HEADERS],
        responses={
            200: StatisticsSerializer,
            **openapi.rest_errors(
                400,
                (404, "`not_found`: the project has neither telemetry nor a ledger for it."),
            ),
        },
        tags=["sessions"],
    )
    def get(self, request, session_id: str):
        """Statistics of one session of this project, always exact. 404 when the project
        has neither telemetry nor a budget ledger for the session."""
        project_id = request.user.project.pk
        session_id = checked_session_id(session_id)
        filters = _filters(request)
        known = telemetry_session_exists(project_id=project_id, session_id=session_id)
        if not known and session_get(project_id=project_id, session_id=session_id) is None:
            raise errors.NotFound(f"No session '{session_id[:200]}' in this project.")
        result = statistics(project_id=project_id, session_id=session_id, **filters)
        return Response(jsonable(asdict(result)))
