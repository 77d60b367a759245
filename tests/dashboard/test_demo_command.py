"""`manage.py demo` fills a fresh install through the real pipeline."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.catalog.models import Provider
from aura_orchestrator.management.commands.demo import served_url
from aura_orchestrator.tenancy.models import ApiKey, Project
from budgets.models import BudgetConstraint, LlmSession
from presets.operation_types import OperationType
from telemetry.models import OperationTelemetry, TelemetryRollup


@pytest.mark.django_db(transaction=True)
def test_demo_runs_end_to_end_and_leaves_telemetry_sessions_and_cache_entries():
    """40 operations in 4 sessions: every one recorded, all 13 types, cache hits and
    entries, budget ledgers, named constraints, rollups, rows spread over the history,
    tool round trips and images, and the demo providers left configured but disabled."""
    out = StringIO()
    call_command(
        "demo",
        "--operations=40",
        "--sessions=4",
        "--latency=0",
        "--seed=3",
        "--history-hours=24",
        stdout=out,
    )

    project = Project.objects.get(name="demo")
    rows = OperationTelemetry.objects.filter(project=project)
    assert rows.count() == 40
    assert set(rows.values_list("operation_type", flat=True)) == set(OperationType.values)
    assert rows.filter(success=True).count() >= 30
    assert rows.filter(cache_hit=True).exists()
    assert set(rows.exclude(provider_name="").values_list("provider_name", flat=True)) == {
        "demo",
        "demo-backup",
        "demo-embed",
    }
    # Passages embedded in batches: input tokens at the embedding model's price, no output.
    embedded = rows.filter(provider_name="demo-embed", success=True)
    assert embedded.exists()
    assert all(r.tokens_in > 0 and r.tokens_out == 0 and r.estimated_cost > 0 for r in embedded)
    assert set(embedded.values_list("operation_type", flat=True)) == {"rag_retrieval"}
    assert rows.filter(started_at__lt=timezone.now() - timedelta(hours=6)).exists()
    # Retrieval through tools: calls answered (two at once too), then the results handed back.
    called = rows.filter(success=True).exclude(tool_calls=[])
    assert called.exists()
    assert any(len(calls) == 2 for calls in called.values_list("tool_calls", flat=True))
    assert {c["name"] for calls in called.values_list("tool_calls", flat=True) for c in calls} == {
        "search_knowledge_base",
        "fetch_source",
    }
    assert rows.filter(success=True, tools_sent=2, tool_calls=[]).exists()  # the final answers
    # Storyboard frames inline and reference images by URL.
    assert rows.filter(images_sent=1, operation_type=OperationType.SCENE_ANALYSIS).exists()
    assert rows.filter(images_sent=1, operation_type=OperationType.VISUAL_PROMPTS).exists()
    assert LlmSession.objects.filter(project=project).count() == 4
    assert LlmSession.objects.filter(project=project, constraint__isnull=False).exists()
    assert CacheEntry.objects.filter(project=project).exists()
    assert BudgetConstraint.objects.filter(name__startswith="demo-").count() == 3
    assert ApiKey.objects.filter(project=project).count() == 1
    assert TelemetryRollup.objects.filter(project=project).exists()
    assert not Provider.objects.filter(
        name__in=["demo", "demo-backup", "demo-embed"], enabled=True
    ).exists()
    output = out.getvalue()
    assert "40/40" in output
    assert f"Dashboards: {served_url()}/dashboard/" in output  # HOST, PORT (8000 unset)
    assert "API key of project 'demo' (shown once): aura_" in output


@pytest.mark.django_db
@pytest.mark.parametrize(
    "argument",
    [
        "--operations=0",
        "--sessions=0",
        "--concurrency=500",
        "--latency=-1",
        "--base-url=aura.example.com",
    ],
)
def test_demo_rejects_out_of_range_options(argument):
    """Nonsense options are a clear command error, before anything is configured."""
    with pytest.raises(CommandError):
        call_command("demo", argument, stdout=StringIO())
    assert not Provider.objects.filter(name="demo").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("served", "argument", "printed"),
    [
        ({"HOST": "127.0.0.1", "PORT": 8623, "WORKERS": 1}, None, "http://127.0.0.1:8623"),
        ({"HOST": "0.0.0.0", "PORT": 9000, "WORKERS": 1}, None, "http://127.0.0.1:9000"),
        (
            {"HOST": "127.0.0.1", "PORT": 8000, "WORKERS": 1},
            "--base-url=https://aura.example.com/",
            "https://aura.example.com",
        ),
    ],
)
def test_demo_prints_the_address_it_was_told(settings, served, argument, printed):
    """The dashboard link names HOST and PORT as `serve` reads them (a wildcard address
    on loopback), or --base-url; never a fixed port."""
    settings.AURA = {**settings.AURA, "SERVE": served}
    out = StringIO()
    options = ["--operations=2", "--sessions=1", "--latency=0", "--history-hours=0"]
    call_command("demo", *options, *([argument] if argument else []), stdout=out)
    project = Project.objects.get(name="demo")
    assert f"Dashboards: {printed}/dashboard/?project={project.pk}\n" in out.getvalue()
