"""Fixtures for the dashboard tests: staff and non-staff users, telemetry rows and
session ledgers written straight through the ORM (fast; the pipeline has its own tests)."""

import uuid
from datetime import timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from budgets.models import LlmSession
from telemetry.models import OperationTelemetry

_serial = count(1)


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(
        username="ops-staff", password="not-used", is_staff=True
    )


@pytest.fixture
def staff_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def make_operation(project, *, session_id="video-1", started_at=None, **fields):
    """One telemetry row, successful by default, with one attempt on `primary`."""
    started_at = started_at or timezone.now() - timedelta(minutes=5)
    latency = fields.pop("latency_ms", 400 + next(_serial) % 7 * 100)
    values = {
        "operation_id": uuid.uuid4(),
        "project": project,
        "session_id": session_id,
        "operation_type": "planning",
        "provider_name": "primary",
        "model_name": "sim-gpt",
        "tokens_in": 120,
        "tokens_out": 380,
        "latency_ms": latency,
        "success": True,
        "estimated_cost": Decimal("0.000880"),
        "started_at": started_at,
        "completed_at": started_at + timedelta(milliseconds=latency),
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 2000,
        "attempts": [
            {
                "provider": "primary",
                "model": "sim-gpt",
                "latency_ms": latency,
                "outcome": "ok",
                "status": None,
                "error": None,
            }
        ],
    }
    values.update(fields)
    return OperationTelemetry.objects.create(**values)


def make_session(project, *, session_id, cost_micros=0, cap_micros=None, **fields):
    return LlmSession.objects.create(
        project=project,
        session_id=session_id,
        cost_accrued_micros=cost_micros,
        max_cost_per_session_micros=cap_micros,
        **fields,
    )
