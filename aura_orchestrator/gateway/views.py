"""Gateway views: translate, run the pipeline, render in OpenAI's shapes. Nothing else.

Same Bearer keys and the same error table as the REST API; errors in OpenAI's body
shape (`render_error` is what the shared exception handler calls).
"""

from adrf.views import APIView as AsyncAPIView
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from aura_orchestrator import errors, pipeline
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.db import db
from aura_orchestrator.gateway import render
from aura_orchestrator.gateway.selectors import gateway_model_list
from aura_orchestrator.gateway.translate import chat_call_from


class GatewayView(AsyncAPIView):
    def render_error(self, error: errors.AuraError) -> dict:
        return render.error_body(error)


def _failure(result: pipeline.OperationResult, headers: dict[str, str]) -> Response:
    error = result.error
    headers = {**headers, **error.headers}
    if error.status >= 500:
        # The chain was already retried with backoff and fallback: an SDK retrying on top
        # would multiply the attempts (the OpenAI SDKs honour this header).
        headers["x-should-retry"] = "false"
    return Response(render.error_body(error), status=error.status, headers=headers)


class ChatCompletionsView(GatewayView):
    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT},
        tags=["gateway"],
        operation_id="v1_chat_completions_create",
        summary="OpenAI-compatible chat completions (SSE with `stream: true`)",
    )
    async def post(self, request):
        call = chat_call_from(
            body=request.data,
            headers=request.headers,
            default_session=f"gateway-{request.auth.prefix}",
        )
        principal = principal_of(request)
        session_id = call.operation.session_id
        if call.stream:
            stream = await pipeline.execute_stream(call.operation, principal=principal)
            headers = render.aura_headers(
                operation_id=stream.operation_id,
                session_id=session_id,
                cache_hit=stream.was_cached,
                budget=stream.budget,
                cost=stream.result.telemetry["estimated_cost"] if stream.result else None,
            )
            if stream.error is not None:
                return _failure(stream.result, headers)
            response = StreamingHttpResponse(
                render.sse_events(stream, include_usage=call.include_usage),
                content_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            return response
        result = await pipeline.execute(call.operation, principal=principal)
        headers = render.aura_headers(
            operation_id=result.operation_id,
            session_id=session_id,
            cache_hit=result.was_cached,
            budget=result.budget,
            cost=result.telemetry["estimated_cost"],
        )
        if result.error is not None:
            return _failure(result, headers)
        return Response(render.completion_body(result), headers=headers)


class ModelListView(GatewayView):
    @extend_schema(
        responses={200: OpenApiTypes.OBJECT}, tags=["gateway"], operation_id="v1_models_list"
    )
    async def get(self, request):
        """Configured models: each bare name (routed over every provider serving it) and
        each `provider/model` (pinned to that provider)."""
        return Response({"object": "list", "data": await db(gateway_model_list)})


class ModelDetailView(GatewayView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, tags=["gateway"])
    async def get(self, request, model_id: str):
        for entry in await db(gateway_model_list):
            if entry["id"] == model_id:
                return Response(entry)
        raise errors.UnknownModel(f"Model '{model_id[:200]}' is not configured.")
