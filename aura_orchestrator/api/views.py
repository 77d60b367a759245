"""REST views: validate input, call the pipeline or a selector, serialize. Nothing else."""

from dataclasses import asdict

from adrf.views import APIView as AsyncAPIView
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api import bodies, openapi
from aura_orchestrator.api import serializers as s
from aura_orchestrator.api.exceptions import invalid_field
from aura_orchestrator.api.render import jsonable
from budgets.selectors import budget_status, session_get
from budgets.services import session_clear
from budgets.usage import usage_for_key
from budgets.validators import (
    END_USER_RULE,
    SESSION_ID_RULE,
    is_valid_end_user,
    is_valid_session_id,
)
from presets.operation_types import parse_operation_type
from presets.selectors import preset_get, preset_list


def principal_for_key(api_key) -> pipeline.Principal:
    return pipeline.Principal(project_id=api_key.project_id, api_key_id=api_key.pk)


def principal_of(request) -> pipeline.Principal:
    return principal_for_key(request.auth)


def _execute_body(
    error: errors.AuraError | None, result: pipeline.OperationResult | None = None
) -> dict:
    """The execute answer, one shape for every outcome: a result's, or a refusal's before
    the pipeline ran (`result` None)."""
    body = {
        "operation_id": result.operation_id if result else None,
        "success": result.success if result else False,
        "content": result.content if result else None,
        "tool_calls": result.tool_calls if result else [],
        "was_cached": result.was_cached if result else False,
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
        "telemetry": result.telemetry if result else None,
        "budget": result.budget if result else None,
    }
    if error is not None and error.details:
        body["details"] = error.details
    return jsonable(body)


def execute_reply(result: pipeline.OperationResult) -> tuple[int, dict, dict[str, str]]:
    """(status, body, headers) of an execute response: this view's and the fast path's
    (aura_orchestrator/fastpath), so the two never differ."""
    headers = {**result.headers, **(result.error.headers if result.error else {})}
    return result.status, _execute_body(result.error, result), headers


def execute_error_body(error: errors.AuraError) -> dict:
    """A failure before the pipeline ran (bad input, no key) in the execute shape."""
    return _execute_body(error)


class ExecuteView(AsyncAPIView):
    """Run one operation through presets, cache, budget, providers and telemetry."""

    def render_error(self, error: errors.AuraError) -> dict:
        return execute_error_body(error)

    @extend_schema(
        request=bodies.EXECUTE,
        responses={
            200: s.ExecuteOutputSerializer,
            **openapi.execute_errors(*openapi.JSON_BODY, *openapi.PIPELINE),
        },
        parameters=openapi.ERROR_HEADERS,
        tags=["operations"],
    )
    async def post(self, request):
        operation = bodies.execute_request(request.data)
        result = await pipeline.execute(operation, principal=principal_of(request))
        status, body, headers = execute_reply(result)
        return Response(body, status=status, headers=headers)


def checked_session_id(session_id: str) -> str:
    """A session id from a URL: the same rules as in a request body (PostgreSQL refuses
    NUL characters outright, so they must never reach a query)."""
    if not is_valid_session_id(session_id):
        raise errors.InvalidRequest(f"session_id must be {SESSION_ID_RULE}.")
    return session_id


def _session_or_404(request, session_id: str):
    session_id = checked_session_id(session_id)
    session = session_get(project_id=request.user.project.pk, session_id=session_id)
    if session is None:
        raise errors.NotFound(f"No session '{session_id}' in this project.")
    return session


class SessionBudgetView(APIView):
    @extend_schema(
        parameters=[openapi.SESSION_ID, *openapi.ERROR_HEADERS],
        responses={
            200: s.SessionBudgetSerializer,
            **openapi.rest_errors(400, (404, openapi.NO_SUCH_SESSION)),
        },
        tags=["sessions"],
    )
    def get(self, request, session_id: str):
        """The session's ledger: used, reserved, caps and what remains."""
        status = budget_status(_session_or_404(request, session_id))
        return Response(jsonable(status.body()))


class SessionView(APIView):
    @extend_schema(
        parameters=[openapi.SESSION_ID, *openapi.ERROR_HEADERS],
        responses={204: None, **openapi.rest_errors(400, (404, openapi.NO_SUCH_SESSION))},
        tags=["sessions"],
    )
    def delete(self, request, session_id: str):
        """Clear the session's budget ledger and reservations; its telemetry stays."""
        session_id = checked_session_id(session_id)
        if not session_clear(project_id=request.user.project.pk, session_id=session_id):
            raise errors.NotFound(f"No session '{session_id}' in this project.")
        return Response(status=204)


class PresetListView(APIView):
    @extend_schema(
        parameters=openapi.ERROR_HEADERS,
        responses={200: s.PresetSerializer(many=True), **openapi.rest_errors()},
        tags=["presets"],
    )
    def get(self, request):
        """The effective preset of every operation type."""
        return Response([jsonable(asdict(p)) for p in preset_list()])


class PresetDetailView(APIView):
    @extend_schema(
        parameters=[openapi.OPERATION_TYPE, *openapi.ERROR_HEADERS],
        responses={
            200: s.PresetSerializer,
            **openapi.rest_errors((404, "`not_found`: no such operation type.")),
        },
        tags=["presets"],
    )
    def get(self, request, operation_type: str):
        """The effective preset of one operation type (snake_case or PascalCase)."""
        op = parse_operation_type(operation_type)
        if op is None:
            raise errors.NotFound(f"Unknown operation type '{operation_type[:64]}'.")
        return Response(jsonable(asdict(preset_get(operation_type=op))))


def _end_user_param(request) -> str | None:
    """`?end_user=` from the query string: absent is None; present, it must name one."""
    if "end_user" not in request.query_params:
        return None
    value = request.query_params["end_user"]
    if not is_valid_end_user(value):
        raise invalid_field("end_user", f"end_user must be {END_USER_RULE}.")
    return value


class UsageView(APIView):
    @extend_schema(
        parameters=[openapi.END_USER, *openapi.ERROR_HEADERS],
        responses={200: s.UsageSerializer, **openapi.rest_errors(400)},
        tags=["budgets"],
    )
    def get(self, request):
        """Every spend budget that applies to this key, in its current period: the
        project's, the key's and, with `end_user`, that end user's own (else the default
        for end users): caps, used, reserved, what remains and when the period resets."""
        api_key = request.auth
        end_user = _end_user_param(request)
        entries = usage_for_key(api_key=api_key, end_user=end_user)
        body = {
            "project": api_key.project.name,
            "api_key": api_key.name,
            "end_user": end_user,
            "budgets": [e.body() for e in entries],
        }
        return Response(jsonable(body))
