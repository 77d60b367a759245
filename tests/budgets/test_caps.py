"""The caps table (budgets/caps.py) is the one declaration of a cap: the models hold
exactly its fields, and the SQL condition, the ORM condition and the messages agree."""

import itertools
from decimal import Decimal

import pytest
from django.db import connection, models

from aura_orchestrator.tenancy.services import project_get_or_create
from budgets import caps
from budgets.caps import CAPS, COST, TOKENS, UNITS, Counts
from budgets.models import BudgetConstraint, LlmSession
from budgets.selectors import budget_status
from budgets.services import Caps, caps_columns


def _cap_fields(model) -> dict[str, models.Field]:
    return {f.name: f for f in model._meta.concrete_fields if f.name.startswith("max_")}


def test_a_budget_constraint_holds_exactly_the_public_caps_in_public_units():
    found = _cap_fields(BudgetConstraint)
    assert set(found) == {cap.field for cap in CAPS}
    for cap in CAPS:
        field = found[cap.field]
        assert field.null and field.blank, cap.field
        if cap.unit.money:
            assert isinstance(field, models.DecimalField), cap.field
            assert (field.max_digits, field.decimal_places) == (14, 6)
        else:
            assert isinstance(field, models.PositiveBigIntegerField), cap.field


def test_a_session_ledger_holds_exactly_the_cap_columns_and_each_units_amounts():
    found = {f.column: f for f in _cap_fields(LlmSession).values()}
    assert set(found) == {cap.column for cap in CAPS}
    for cap in CAPS:
        field = found[cap.column]
        assert isinstance(field, models.PositiveBigIntegerField), cap.column  # ledger units
        assert field.null, cap.column
    for unit in UNITS:
        for column in (unit.used, unit.reserved):
            field = LlmSession._meta.get_field(column)
            assert isinstance(field, models.BigIntegerField) and not field.null, column


def test_the_budget_body_names_the_tables_caps_and_remaining_amounts():
    session = LlmSession(session_id="s", project_id=1)
    names = list(budget_status(session).body())
    assert [n for n in names if n.startswith("max_")] == [cap.field for cap in CAPS]
    assert [n for n in names if n.startswith("remaining_")] == [u.remaining for u in UNITS]


def test_caps_are_built_from_public_fields_and_set_every_cap_column():
    every = {cap.field: (Decimal("0.25") if cap.unit.money else 7) for cap in CAPS}
    built = Caps.inline(**every, enforce_hard_limits=False)
    assert set(built.limits) == {cap.column for cap in CAPS}
    for cap in CAPS:
        assert built.limits[cap.column] == (250_000 if cap.unit.money else 7)
    assert caps_columns(Caps()) == {
        **dict.fromkeys((cap.column for cap in CAPS), None),
        "enforce_hard_limits": True,
        "constraint_id": None,
    }
    with pytest.raises(TypeError):
        Caps.inline(max_bananas_per_session=1)


@pytest.mark.django_db
def test_a_named_constraint_brings_every_cap_of_the_table():
    values = {cap.field: (Decimal("1.5") if cap.unit.money else 11) for cap in CAPS}
    constraint = BudgetConstraint.objects.create(name="all", **values)
    named = Caps._load_named("all")
    assert named.constraint_id == constraint.pk
    assert named.limits == caps.ledger_values(values)


def test_has_caps_remaining_and_usage_follow_the_table():
    session = LlmSession(tokens_used=30, tokens_reserved=10, cost_accrued_micros=5)
    assert not session.has_caps and not caps.has_money_caps(session)
    assert caps.remaining(session) == {u.remaining: None for u in UNITS}
    assert caps.usage_shares(session) == []
    for cap in CAPS:
        capped = LlmSession(**{cap.column: 100})
        assert capped.has_caps, cap.column
        assert caps.has_money_caps(capped) is cap.unit.money
    session.max_tokens_per_session = 100
    session.max_cost_per_session_micros = 1_000_005
    assert caps.remaining(session) == {"remaining_tokens": 60, "remaining_cost": Decimal("1")}
    assert caps.usage_shares(session) == [0.4, 5 / 1_000_005]
    status = budget_status(session)
    body = status.body()
    assert (body["remaining_tokens"], body["remaining_cost"]) == (60, Decimal("1"))
    assert (body["max_tokens_per_session"], body["max_cost_per_session"]) == (
        100,
        Decimal("1.000005"),
    )


# --- the SQL and ORM conditions agree with the messages -------------------------------------

_LIMITS = (None, 0, 100)
_SPENT = ((0, 0), (60, 30))  # (used, reserved)
_AMOUNTS = (0, 10, 40, 101)


@pytest.fixture
def grid(db) -> list[LlmSession]:
    """A ledger for every combination of caps (none, zero, 100) and spending."""
    project = project_get_or_create(name="grid").pk
    rows = []
    combos = itertools.product(
        itertools.product(_LIMITS, repeat=len(CAPS)), itertools.product(_SPENT, repeat=2)
    )
    for n, (limits, spent) in enumerate(combos):
        ledger = dict(zip((cap.column for cap in CAPS), limits, strict=True))
        for unit, (used, reserved) in zip(UNITS, spent, strict=True):
            ledger |= {unit.used: used, unit.reserved: reserved}
        rows.append(LlmSession(project_id=project, session_id=f"g{n}", **ledger))
    return LlmSession.objects.bulk_create(rows)


def _sql_admitted(counts: Counts, amounts: dict[str, int]) -> set[int]:
    table = LlmSession._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE {caps.admits_sql(counts)}", amounts)
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.parametrize("counts", list(Counts))
def test_sql_and_orm_conditions_admit_exactly_what_the_messages_do_not_refuse(grid, counts):
    for tokens, cost in itertools.product(_AMOUNTS, repeat=2):
        amounts = {TOKENS.amount: tokens, COST.amount: cost}
        expected = {
            ledger.pk for ledger in grid if not caps.overruns(ledger, counts, amounts=amounts)
        }
        orm = set(
            LlmSession.objects.filter(caps.admits_q(counts, amounts=amounts)).values_list(
                "pk", flat=True
            )
        )
        assert orm == expected, (counts, amounts)
        assert _sql_admitted(counts, amounts) == expected, (counts, amounts)
    # The grid reaches both answers.
    assert 0 < len(expected) < len(grid)


@pytest.mark.parametrize("counts", [None, *Counts])
def test_the_orm_filter_of_capped_ledgers_is_has_caps(grid, counts):
    """`capped_q` (the admin's and the dashboard's filters) picks exactly the ledgers that
    have a cap of the kind asked for, as `has_caps` says in Python."""
    columns = [cap.column for cap in (CAPS if counts is None else caps.caps_counting(counts))]
    expected = {s.pk for s in grid if any(getattr(s, c) is not None for c in columns)}
    picked = set(LlmSession.objects.filter(caps.capped_q(counts)).values_list("pk", flat=True))
    assert picked == expected and 0 < len(picked) < len(grid)
    if counts is None:
        assert expected == {s.pk for s in grid if caps.has_caps(s)}
