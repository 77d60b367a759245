"""Parameter optimisation and estimation: validate, call `optimization`, serialize."""

from adrf.views import APIView as AsyncAPIView
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aura_orchestrator.api import openapi
from aura_orchestrator.api import serializers as s
from aura_orchestrator.api.render import jsonable
from aura_orchestrator.api.views import principal_of
from aura_orchestrator.optimization.estimate import EstimateRequest, estimate
from aura_orchestrator.optimization.explain import explain
from aura_orchestrator.optimization.suggest import OptimizeRequest, optimize
from aura_orchestrator.optimization.types import Constraints


class ConstraintsSerializer(serializers.Serializer):
    max_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=1_000_000
    )
    max_cost = serializers.DecimalField(
        max_digits=14, decimal_places=6, required=False, allow_null=True, min_value=0
    )
    max_latency_seconds = serializers.FloatField(
        required=False, allow_null=True, min_value=1.0, max_value=3600.0
    )
    prioritize_quality = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: quality first (stay near the preset); false: cost first (trim); "
        "null: balanced.",
    )


class OptimizeView(AsyncAPIView):
    """Suggest parameters for an operation type, within the given constraints."""

    class OptimizeInputSerializer(serializers.Serializer):
        operation_type = s.OperationTypeField()
        constraints = ConstraintsSerializer(required=False, allow_null=True)
        use_case = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=2000
        )
        use_llm = serializers.BooleanField(required=False, default=False)
        provider = serializers.SlugField(required=False, allow_null=True, max_length=64)

    class OptimizeOutputSerializer(serializers.Serializer):
        temperature = serializers.FloatField()
        top_p = serializers.FloatField()
        max_tokens = serializers.IntegerField()
        timeout_seconds = serializers.FloatField()
        max_retries = serializers.IntegerField()
        rationale = serializers.CharField()
        confidence = serializers.FloatField(help_text="0..1")
        source = serializers.ChoiceField(choices=["rules", "telemetry", "llm"])
        operation_type = serializers.CharField()
        model = serializers.CharField(allow_null=True)
        sample_size = serializers.IntegerField(help_text="Operations learned from.")
        typical_prompt_tokens = serializers.IntegerField()
        worst_case_cost = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
        worst_case_latency_seconds = serializers.FloatField()
        adjustments = serializers.ListField(child=serializers.CharField())
        notes = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        request=OptimizeInputSerializer,
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
        serializer = self.OptimizeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
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


class ParametersSerializer(s.CustomPresetSerializer):
    """Any of the five tuned parameters."""


class ChangeOutputSerializer(serializers.Serializer):
    parameter = serializers.CharField()
    base = serializers.FloatField()
    adjusted = serializers.FloatField()
    cost = serializers.CharField(help_text="Expected effect on cost.")
    latency = serializers.CharField(help_text="Expected effect on latency.")
    output = serializers.CharField(help_text="Expected effect on the output.")


class ExplainView(AsyncAPIView):
    """Explain, in plain language, what changing a set of parameters does."""

    class ExplainInputSerializer(serializers.Serializer):
        base = ParametersSerializer(
            required=False, allow_null=True, help_text="Defaults to the operation type's preset."
        )
        adjusted = ParametersSerializer()
        operation_type = s.OperationTypeField(required=False, allow_null=True)
        reason = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=500
        )
        use_llm = serializers.BooleanField(required=False, default=False)
        provider = serializers.SlugField(required=False, allow_null=True, max_length=64)

        def validate(self, attrs):
            if not attrs.get("base") and not attrs.get("operation_type"):
                raise serializers.ValidationError(
                    {"base": "Give `base` parameters or an `operation_type` whose preset is base."}
                )
            return attrs

    class ExplainOutputSerializer(serializers.Serializer):
        explanation = serializers.CharField()
        source = serializers.ChoiceField(choices=["template", "llm"])
        changes = ChangeOutputSerializer(many=True)
        notes = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        request=ExplainInputSerializer,
        responses={200: ExplainOutputSerializer, **openapi.rest_errors(*openapi.JSON_BODY)},
        parameters=openapi.ERROR_HEADERS,
        tags=["optimization"],
    )
    async def post(self, request):
        serializer = self.ExplainInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
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

    class EstimateInputSerializer(serializers.Serializer):
        operation_type = s.OperationTypeField()
        prompt = serializers.CharField(max_length=s.MAX_PROMPT_CHARS, trim_whitespace=False)
        system_prompt = serializers.CharField(
            required=False,
            allow_blank=True,
            allow_null=True,
            max_length=s.MAX_PROMPT_CHARS,
            trim_whitespace=False,
        )
        model = serializers.CharField(required=False, allow_null=True, max_length=200)
        providers = serializers.ListField(
            child=serializers.SlugField(max_length=64),
            required=False,
            allow_null=True,
            allow_empty=False,
            max_length=10,
        )
        custom_preset = s.CustomPresetSerializer(required=False, allow_null=True)
        session_id = s.SessionIdField(required=False, allow_null=True)

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
        request=EstimateInputSerializer,
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
        serializer = self.EstimateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
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
