import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError
from rest_framework.settings import api_settings

from aura_orchestrator.api.render import jsonable
from aura_orchestrator.api.statistics_views import StatisticsFilterSerializer
from aura_orchestrator.tenancy.models import Project
from telemetry.selectors import Statistics, statistics


class Command(BaseCommand):
    help = (
        "Print operation statistics (the same as GET /api/v1/statistics) as a table or JSON. "
        "Every project unless --project is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="Inclusive start, ISO 8601 (e.g. 2025-01-31).")
        parser.add_argument("--until", help="Exclusive end, ISO 8601.")
        parser.add_argument("--provider")
        parser.add_argument("--model")
        parser.add_argument("--operation-type")
        parser.add_argument("--session", help="One session (needs --project).")
        parser.add_argument("--project", help="Project name.")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print JSON.")

    def handle(self, *args, project, session, as_json: bool, **options):
        raw = {
            k: options[k]
            for k in ("since", "until", "provider", "model", "operation_type")
            if options[k] is not None
        }
        filters = StatisticsFilterSerializer(data=raw)
        if not filters.is_valid():
            raise CommandError(_first_error(filters.errors))
        project_id = None
        if project is not None:
            project_id = Project.objects.filter(name=project).values_list("pk", flat=True).first()
            if project_id is None:
                raise CommandError(f"No project named '{project}'.")
        if session is not None and project_id is None:
            raise CommandError("--session needs --project (session ids are per project).")
        result = statistics(project_id=project_id, session_id=session, **filters.validated_data)
        if as_json:
            self.stdout.write(_dumps(jsonable(asdict(result))))
        else:
            self.stdout.write(render_table(result, project=project or "all projects"))


def _dumps(value) -> str:
    return json.dumps(value, indent=2)


def _first_error(errors: dict) -> str:
    name, problems = next(iter(errors.items()))
    problem = problems[0] if isinstance(problems, list) else problems
    if isinstance(problem, dict | list):
        return _first_error(problem if isinstance(problem, dict) else {name: problem})
    label = "" if name == api_settings.NON_FIELD_ERRORS_KEY else f"--{name}: "
    return f"{label.replace('_', '-')}{problem}"


def render_table(result: Statistics, *, project: str) -> str:
    span = f"{_when(result.since)} → {_when(result.until)}"
    lines = [
        f"Statistics for {project}, {span} (source: {result.source})",
        "",
        f"  operations        {result.total_operations:>14,}",
        f"  successful        {result.successful_operations:>14,}",
        f"  failed            {result.failed_operations:>14,}",
        f"  cache hits        {result.cache_hits:>14,}   ({result.cache_hit_rate:.1%})",
        f"  tokens in         {result.total_tokens_in:>14,}",
        f"  tokens out        {result.total_tokens_out:>14,}",
        f"  retries           {result.total_retries:>14,}",
        f"  estimated cost    {'$' + format(result.total_estimated_cost, ',.6f'):>14}",
        f"  prompt caching    {'$' + format(result.total_cache_savings, ',.6f'):>14} saved",
        f"  latency avg       {result.average_latency_ms:>11,.1f} ms",
        f"  latency p50       {result.p50_latency_ms:>11,.1f} ms",
        f"  latency p95       {result.p95_latency_ms:>11,.1f} ms",
        f"  latency p99       {result.p99_latency_ms:>11,.1f} ms",
    ]
    if result.operations_by_provider:
        lines += ["", f"  {'provider':<24}{'operations':>12}{'cost (USD)':>16}"]
        for name, count in result.operations_by_provider.items():
            cost = result.cost_by_provider.get(name, 0)
            lines.append(f"  {name:<24}{count:>12,}{format(cost, ',.6f'):>16}")
    if result.operations_by_type:
        lines += ["", f"  {'operation type':<24}{'operations':>12}"]
        for name, count in sorted(result.operations_by_type.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<24}{count:>12,}")
    return "\n".join(lines)


def _when(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else "…"
