"""Parameter optimisation and estimation: validate, call `optimization`, serialize."""

from adrf.views import APIView as AsyncAPIView
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aura_orchestrator.api import bodies, openapi
from aura_orchestrator.api.render import jsonable
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.optimization.estimate import EstimateRequest, estimate
from aura_orchestrator.optimization.explain import explain
from aura_orchestrator.optimization.suggest import OptimizeRequest, optimize
from aura_orchestrator.optimization.types import Constraints


class OptimizeView(AsyncAPIView):
    """Suggest parameters for an operation type, within the given constraints."""

    class OptimizeOutputSerializer(serializers.Serializer):
        temperature = serializers.FloatField()
        top_p = serializers.FloatField()
        max_tokens = serializers.IntegerField()
        timeout_seconds = serializers.FloatField()
        max_retries = serializers.IntegerField()
        rationale = serializers.CharField()
        confidence = serializers.FloatField(help_text="0..1")
        # A declared field named like Field.source: DRF's metaclass collects it.
        source = serializers.ChoiceField(choices=["rules", "telemetry", "llm"])  # type: ignore[assignment]
        operation_type = serializers.CharField()
        model = serializers.CharField(allow_null=True)
        sample_size = serializers.IntegerField(help_text="Operations learned from.")
        typical_prompt_tokens = serializers.IntegerField()
        worst_case_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
        worst_case_latency_seconds = serializers.FloatField()
        adjustments = serializers.ListField(child=serializers.CharField())
        notes = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        request=bodies.OPTIMIZE,
        responses={
            200: OptimizeOutputSerializer,
            **openapi.rest_errors(
                *openapi.JSON_BODY,
                (422, "`constraints_unsatisfiable`: no parameters can meet the constraints."),
            ),
        },
        parameters=openapi.ERROR_HEADERS,
        examples=[
            OpenApiExample(
                "Planning for social media",
                request_only=True,
                value={
                    "operation_type": "planning",
                    "constraints": {
                        "max_tokens": 1500,
                        "max_cost": "0.25",
                        "max_latency_seconds": 30,
                        "prioritize_quality": True,
                    },
                    "use_case": "Quick video planning for social media",
                    "use_llm": False,
                },
            )
        ],
        tags=["optimization"],
    )
    async def post(self, request):
        data = bodies.OPTIMIZE.parse(request.data)
        suggestion = await optimize(
            request=OptimizeRequest(
                operation_type=data["operation_type"],
                constraints=Constraints(**(data.get("constraints") or {})),
                use_case=data.get("use_case") or "",
                use_llm=data["use_llm"],
                provider=data.get("provider"),
            ),
            principal=principal_of(request),
        )
        return Response(jsonable(suggestion.as_body()))


class ChangeOutputSerializer(serializers.Serializer):
    parameter = serializers.CharField()
    base = serializers.FloatField()
    adjusted = serializers.FloatField()
    cost = serializers.CharField(help_text="Expected effect on cost.")
    latency = serializers.CharField(help_text="Expected effect on latency.")
    output = serializers.CharField(help_text="Expected effect on the output.")


class ExplainView(AsyncAPIView):
    """Explain, in plain language, what changing a set of parameters does."""

    class ExplainOutputSerializer(serializers.Serializer):
        explanation = serializers.CharField()
        source = serializers.ChoiceField(choices=["template", "llm"])  # type: ignore[assignment]
        changes = ChangeOutputSerializer(many=True)
        notes = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        request=bodies.EXPLAIN,
        responses={200: ExplainOutputSerializer, **openapi.rest_errors(*openapi.JSON_BODY)},
        parameters=openapi.ERROR_HEADERS,
        tags=["optimization"],
    )
    async def post(self, request):
        data = bodies.EXPLAIN.parse(request.data)
        result = await explain(
            base=dict(data["base"]) if data.get("base") else None,
            operation_type=data.get("operation_type"),
            adjusted=dict(data["adjusted"]),
            reason=data.get("reason") or "",
            use_llm=data["use_llm"],
            provider=data.get("provider"),
            principal=principal_of(request),
        )
        return Response(jsonable(result.as_body()))


class EstimateView(APIView):
    """Tokens and cost of a request before running it, and whether its session's budget
    would admit it (nothing is reserved)."""

    class EstimateOutputSerializer(serializers.Serializer):
        operation_type = serializers.CharField()
        provider = serializers.CharField()
        model = serializers.CharField()
        tokens_in = serializers.IntegerField()
        worst_case_tokens_out = serializers.IntegerField()
        worst_case_tokens = serializers.IntegerField()
        worst_case_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
        typical_tokens_out = serializers.IntegerField(allow_null=True)
        typical_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
        typical_source = serializers.CharField(allow_null=True)
        typical_sample_size = serializers.IntegerField()
        priced = serializers.BooleanField()
        routes = serializers.ListField(child=serializers.DictField())
        budget = serializers.DictField(allow_null=True)

    @extend_schema(
        request=bodies.ESTIMATE,
        responses={
            200: EstimateOutputSerializer,
            **openapi.rest_errors(
                *openapi.JSON_BODY,
                (404, "`model_not_found`: no provider of the chain serves the model."),
            ),
        },
        parameters=openapi.ERROR_HEADERS,
        tags=["optimization"],
    )
    def post(self, request):
        data = bodies.ESTIMATE.parse(request.data)
        result = estimate(
            request=EstimateRequest(
                operation_type=data["operation_type"],
                prompt=data["prompt"],
                system_prompt=data.get("system_prompt"),
                model=data.get("model"),
                providers=tuple(data["providers"]) if data.get("providers") else None,
                overrides=dict(data.get("custom_preset") or {}),
                session_id=data.get("session_id"),
            ),
            project_id=request.user.project.pk,
        )
        return Response(jsonable(result))
