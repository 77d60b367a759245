"""Prometheus /metrics after real operations, and the `statistics` command."""

import json
import re
from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from tests.telemetry.dataset import make_dataset


def _sample(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _execute(client, i: int):
    return client.post(
        "/api/v1/operations/execute",
        {"session_id": f"m-{i}", "operation_type": "planning", "prompt": f"Plan video {i}"},
        format="json",
    )


@pytest.mark.django_db(transaction=True)
def test_metrics_count_an_operation_made_through_the_api(api_client, client, provider):
    """An operation through the API moves the operation, token, cost and latency series
    labelled with its provider, model and type."""
    labels = {"provider": "primary", "model": "sim-gpt", "operation_type": "planning"}
    before = client.get("/metrics").content.decode()
    response = _execute(api_client, 0)
    assert response.status_code == 200, response.content
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after["Content-Type"].startswith("text/plain")
    text = after.content.decode()
    telemetry = response.json()["telemetry"]

    def delta(name: str, **extra) -> float:
        return _sample(text, name, **labels, **extra) - _sample(before, name, **labels, **extra)

    assert delta("aura_operations_total", outcome="success") == 1
    assert delta("aura_tokens_total", direction="in") == telemetry["tokens_in"]
    assert delta("aura_tokens_total", direction="out") == telemetry["tokens_out"]
    assert delta("aura_cost_usd_total") == pytest.approx(float(telemetry["estimated_cost"]))
    assert delta("aura_operation_latency_seconds_count") == 1
    for name in ("aura_cache_hits_total", "aura_budget_refusals", "aura_provider_errors"):
        assert f"# HELP {name.removesuffix('_total')}" in text


@pytest.mark.django_db(transaction=True)
def test_metrics_sum_every_worker_process(live_server_factory, api_key, provider):
    """With two uvicorn workers (multiprocess mode set up by `serve`), /metrics counts
    the operations served by either worker."""
    server = live_server_factory(2)
    headers = {"Authorization": f"Bearer {api_key.raw_key}"}
    labels = {"provider": "primary", "operation_type": "planning", "outcome": "success"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        before = _sample(http.get("/metrics").text, "aura_operations_total", **labels)
        for i in range(8):
            body = {"session_id": f"w-{i}", "operation_type": "planning", "prompt": f"P {i}"}
            # A fresh connection each time, so requests spread over the workers.
            assert (
                httpx.post(
                    f"{server.url}/api/v1/operations/execute", json=body, headers=headers
                ).status_code
                == 200
            )
        after = _sample(http.get("/metrics").text, "aura_operations_total", **labels)
    assert after - before == 8


@pytest.mark.django_db
def test_statistics_command_prints_the_numbers(project):
    """The table shows the totals, cost and exact percentiles; --json the API's body."""
    make_dataset(project)
    out = StringIO()
    call_command("statistics", "--project", "studio", stdout=out)
    table = out.getvalue()
    assert re.search(r"operations\s+10\b", table)
    assert re.search(r"failed\s+2\b", table)
    assert "$0.001800" in table
    assert re.search(r"latency p95\s+590\.5 ms", table)
    assert re.search(r"backup\s+4\s+0\.000600", table)
    out = StringIO()
    call_command("statistics", "--provider", "primary", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["total_operations"] == 6
    assert body["total_estimated_cost"] == "0.001200"


@pytest.mark.django_db
def test_statistics_command_rejects_a_bad_filter():
    """A bad date is a CommandError naming the option."""
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--since"):
        call_command("statistics", "--since", "tomorrow-ish")
