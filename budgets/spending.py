"""Spend budgets: which apply to a request (`levels_for`), and the protocol that holds
them all exactly, together with the session's (`spend_reserve`).

A request reserves its worst case on this worker's shard of every budget that applies,
all or nothing, in one write (`SpendWrite`: SQL in store/pg_sql.py, the ORM below). When
a shard is short of room (or new), the slow write (`spend_write_slow`, one transaction
that locks the budgets' periods and shards) tops it up from its period's pool; when the
pool is dry, every shard's unused allotment goes back to it first, so it refuses only
when a budget's shards, summed under their locks, cannot take the worst case: the
refusal is exact, and so is the admission (a shard never admits past its allotment, and
the allotments never sum past the cap). The hold is settled or released with the
session's reservation, in the same transaction.
"""

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum

from aura_orchestrator.caching.config_cache import memoized
from aura_orchestrator.errors import BudgetExceeded
from aura_orchestrator.money import micros_to_usd
from budgets import periods
from budgets.caps import COST, TOKENS, Unit

if TYPE_CHECKING:
    from budgets.limit_models import RateLimit
from budgets.spend_models import (
    Scope,
    SpendBudget,
    SpendHold,
    SpendPeriod,
    SpendShard,
    parse_thresholds,
)

# --- what applies --------------------------------------------------------------------------


def scope_label(
    budget: "SpendBudget | RateLimit | None" = None,
    *,
    scope: str = "",
    project: str = "",
    api_key: str = "",
    end_user: str = "",
    provider: str = "",
    model: str = "",
) -> str:
    """How a budget is named to clients: `project:search`, `api_key:ingest`,
    `end_user:u-42`, `end_user:*` (every end user's default), `+provider:P`/`+model:M`
    when narrowed. From a budget or a rate limit (its project and key loaded), or from
    its parts."""
    if budget is not None:
        scope, project, end_user = budget.scope, budget.project.name, budget.end_user
        api_key = budget.api_key.name if budget.api_key else ""
        narrowed = getattr(budget, "provider", None)  # rate limits narrow by model only
        provider = narrowed.name if narrowed else ""
        model = budget.model_name
    label = {
        Scope.PROJECT: f"project:{project}",
        Scope.API_KEY: f"api_key:{api_key}",
        Scope.END_USER: f"end_user:{end_user}",
        Scope.DEFAULT_END_USER: "end_user:*",
    }[Scope(scope)]
    if provider:
        label += f"+provider:{provider}"
    if model:
        label += f"+model:{model}"
    return label


@dataclass(frozen=True, slots=True)
class Rule:
    """A SpendBudget as the per-process memo keeps it (immutable, shared)."""

    budget_id: int
    scope: str
    api_key_id: int | None
    end_user: str
    provider_name: str | None
    model_name: str | None
    period: str
    max_tokens: int | None
    max_cost_micros: int | None
    hard: bool
    label: str
    thresholds: tuple[int, ...] = ()  # percents that alert (budgets/alerts.py)

    def limit(self, unit: Unit) -> int | None:
        return self.max_tokens if unit is TOKENS else self.max_cost_micros

    def serves(self, provider_name: str, model_name: str) -> bool:
        """Does a call served by this provider and model count against this budget?"""
        return (self.provider_name is None or self.provider_name == provider_name) and (
            self.model_name is None or self.model_name == model_name
        )


@dataclass(frozen=True, slots=True)
class Rules:
    time_zone: str
    rules: tuple[Rule, ...]


def _load_rules(project_id: int) -> Rules:
    from aura_orchestrator.tenancy.models import Project

    project = Project.objects.get(pk=project_id)
    budgets = SpendBudget.objects.filter(project_id=project_id, active=True).select_related(
        "project", "api_key", "provider"
    )
    return Rules(
        time_zone=project.time_zone,
        rules=tuple(
            Rule(
                budget_id=b.pk,
                scope=b.scope,
                api_key_id=b.api_key_id,
                end_user=b.end_user,
                provider_name=b.provider.name if b.provider else None,
                model_name=b.model_name or None,
                period=b.period,
                max_tokens=b.max_tokens,
                max_cost_micros=b.max_cost_micros,
                hard=b.enforce_hard_limits,
                label=scope_label(b),
                thresholds=tuple(parse_thresholds(b.thresholds)),
            )
            for b in budgets
        ),
    )


def rules_of(project_id: int) -> Rules:
    """The project's active budgets, memoized like the rest of the configuration (an
    edit bumps the version: caching/config_cache.py)."""
    return memoized(("spend", project_id), lambda: _load_rules(project_id))


@dataclass(frozen=True, slots=True)
class Level:
    """One budget applying to one request, in the period holding the request."""

    rule: Rule
    subject: str  # the end user, for the default end-user budget; "" otherwise
    period_start: datetime
    resets_at: datetime | None

    @property
    def key(self) -> tuple[int, str, datetime]:
        return (self.rule.budget_id, self.subject, self.period_start)

    @property
    def label(self) -> str:
        return self.rule.label if not self.subject else f"end_user:{self.subject}"

    def details(self) -> dict[str, Any]:
        """What a refusal says about this budget (`details` of the 402)."""
        return {
            "scope": self.label,
            "period": self.rule.period,
            "resets_at": None if self.resets_at is None else self.resets_at.isoformat(),
        }


class ScopedRule(Protocol):
    """What decides whether a rule (a spend budget's, a rate limit's) applies to a call."""

    @property
    def scope(self) -> str: ...
    @property
    def api_key_id(self) -> int | None: ...
    @property
    def end_user(self) -> str: ...
    @property
    def provider_name(self) -> str | None: ...
    @property
    def model_name(self) -> str | None: ...


def end_users_own(
    rules: Iterable[ScopedRule], *, end_user: str | None
) -> set[tuple[str | None, str | None]]:
    """The (provider, model) narrowings for which `end_user` has a rule of their own:
    there the default end-user rule does not apply to them."""
    return {
        (r.provider_name, r.model_name)
        for r in rules
        if r.scope == Scope.END_USER and end_user and r.end_user == end_user
    }


def scope_applies(
    rule: ScopedRule,
    *,
    api_key_id: int | None,
    end_user: str | None,
    own: set[tuple[str | None, str | None]],
) -> bool:
    """Whether `rule`'s scope covers a call of this key and end user (`own`:
    `end_users_own`): the project's always, a key's for that key, an end user's for
    them, the default end-user rule for every end user without their own."""
    if rule.scope == Scope.API_KEY:
        return rule.api_key_id == api_key_id
    if rule.scope == Scope.END_USER:
        return bool(end_user) and rule.end_user == end_user
    if rule.scope == Scope.DEFAULT_END_USER:
        return bool(end_user) and (rule.provider_name, rule.model_name) not in own
    return True


def levels_for(
    *,
    project_id: int,
    api_key_id: int | None,
    end_user: str | None,
    routes: Iterable[tuple[str, str]],
    now: datetime | None = None,
) -> list[Level]:
    """Every budget that applies to a request of this key and end user whose chain holds
    `routes` (provider, model): the project's, the key's, the end user's (their own, else
    the default for end users), each narrowed one only if a route of the chain counts."""
    rules = rules_of(project_id)
    if not rules.rules:
        return []
    routes = list(routes)
    own = end_users_own(rules.rules, end_user=end_user)
    now = now or periods.now()
    levels = []
    for rule in rules.rules:
        if not scope_applies(rule, api_key_id=api_key_id, end_user=end_user, own=own):
            continue
        if not any(rule.serves(p, m) for p, m in routes):
            continue
        start, resets = periods.window(rule.period, time_zone=rules.time_zone, now=now)
        subject = (end_user or "") if rule.scope == Scope.DEFAULT_END_USER else ""
        levels.append(Level(rule=rule, subject=subject, period_start=start, resets_at=resets))
    return levels


def pick_shard() -> int:
    """The shard a reservation uses, drawn per call: the calls in flight in one worker
    spread over the shards as much as those of many (one row per worker made one
    worker's 50 calls in flight queue on it, and on its versions)."""
    return random.randrange(settings.AURA["SPEND_SHARDS"])


# The pks of the shards this process has written, by (budget, subject, period start,
# shard): the fast write names its rows by pk (a row is never replaced; a deleted one is
# simply missed, and the slow write finds the new one). Bounded: cleared when full.
_SHARD_PKS: dict[tuple[int, str, datetime, int], int] = {}
_SHARD_PKS_MAX = 50_000


def known_shards(levels: Sequence[Level], shard: int) -> list[int] | None:
    """This worker's shard pk of every level, in their order; None if one is not known."""
    pks = []
    for level in levels:
        pk = _SHARD_PKS.get((*level.key, shard))
        if pk is None:
            return None
        pks.append(pk)
    return pks


def _remember_shards(levels: Sequence[Level], shard: int, pks: Sequence[int]) -> None:
    if len(_SHARD_PKS) > _SHARD_PKS_MAX:
        _SHARD_PKS.clear()
    for level, pk in zip(levels, pks, strict=True):
        _SHARD_PKS[(*level.key, shard)] = pk


# --- the hold ------------------------------------------------------------------------------


@dataclass(slots=True)
class SpendTotals:
    """One budget's period summed over its shards (ledger units)."""

    tokens_used: int = 0
    cost_micros: int = 0
    tokens_reserved: int = 0
    cost_reserved_micros: int = 0

    def in_use(self, unit: Unit) -> int:
        if unit is TOKENS:
            return self.tokens_used + self.tokens_reserved
        return self.cost_micros + self.cost_reserved_micros

    def used(self, unit: Unit) -> int:
        return self.tokens_used if unit is TOKENS else self.cost_micros

    def add(self, other: "SpendTotals") -> None:
        self.tokens_used += other.tokens_used
        self.cost_micros += other.cost_micros
        self.tokens_reserved += other.tokens_reserved
        self.cost_reserved_micros += other.cost_reserved_micros


@dataclass(slots=True)
class SpendHoldRef:
    """What an operation holds on the budgets' shards, kept with its reservation:
    `shards` as in SpendHold (pk, narrowed provider, narrowed model)."""

    id: uuid.UUID
    shards: list[list[Any]]
    tokens: int
    cost_micros: int

    def charges(
        self, *, served: tuple[str, str] | None, charge: tuple[int, int] | None, operations: int
    ) -> list[tuple[int, int, int, int]]:
        """Per shard: (pk, tokens, micro-dollars, operations) to charge. A narrowed
        budget's shard is charged only for a call its provider and model served."""
        rows = []
        for pk, provider, model in self.shards:
            counts = (
                charge is not None
                and served is not None
                and (provider is None or provider == served[0])
                and (model is None or model == served[1])
            )
            if counts:
                tokens, cost = charge  # type: ignore[misc]  # counts: charge is set
                rows.append((pk, tokens, cost, operations))
            else:
                rows.append((pk, 0, 0, 0))
        return rows

    def doc(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "shards": self.shards,
            "tokens": self.tokens,
            "cost_micros": self.cost_micros,
        }

    @classmethod
    def of_doc(cls, doc: dict[str, Any]) -> "SpendHoldRef":
        return cls(
            id=uuid.UUID(doc["id"]),
            shards=doc["shards"],
            tokens=doc["tokens"],
            cost_micros=doc["cost_micros"],
        )


@dataclass(slots=True)
class Written:
    """What a spend write held, and every level's totals after it."""

    hold: SpendHoldRef
    totals: dict[tuple[int, str, datetime], SpendTotals] = field(default_factory=dict)


@dataclass(slots=True)
class SpendState:
    """The spend budgets of one operation and their totals after its reservation."""

    levels: list[Level]
    totals: dict[tuple[int, str, datetime], SpendTotals] = field(default_factory=dict)
    charged: dict[tuple[int, str, datetime], tuple[int, int]] = field(default_factory=dict)

    def crossed(self) -> list[tuple[int, str, datetime]]:
        """The levels whose charge (`settled`) took spending across a threshold of theirs,
        by the totals this operation saw: those the alerts must check now. A crossing
        two concurrent operations each saw only half of is found by the alerts job
        within its minute."""
        keys = []
        for level in self.levels:
            charge = self.charged.get(level.key)
            sums = self.totals.get(level.key)
            if charge is None or sums is None:
                continue
            for unit, spent in ((TOKENS, charge[0]), (COST, charge[1])):
                cap = level.rule.limit(unit)
                if not cap or not spent:
                    continue
                after = sums.used(unit) * 100
                before = (sums.used(unit) - spent) * 100
                if any(before < t * cap <= after for t in level.rule.thresholds):
                    keys.append(level.key)
                    break
        return keys

    def _shares(self) -> Iterable[tuple[Level, Unit, int, int]]:
        """(level, unit, cap, in use) for every capped unit of every level."""
        for level in self.levels:
            sums = self.totals.get(level.key, SpendTotals())
            for unit in (TOKENS, COST):
                cap = level.rule.limit(unit)
                if cap is not None:
                    yield level, unit, cap, sums.in_use(unit)

    def soft_warnings(self) -> list[str]:
        """Soft budgets this operation's reservation took past their cap."""
        return [
            f"{level.label} ({level.rule.period}) {'max_tokens' if unit is TOKENS else 'max_cost'}"
            f": {unit.show(in_use)} in use exceeds the cap of {unit.show(cap)} (soft limit)"
            for level, unit, cap, in_use in self._shares()
            if not level.rule.hard and in_use > cap
        ]

    def settled(
        self, hold: SpendHoldRef, *, charge: tuple[int, int] | None, served: tuple[str, str] | None
    ) -> None:
        """The totals as the finish left them (the worst case handed back, the charge
        added where it counts), so the answer's budget shows this operation settled."""
        rows = hold.charges(served=served, charge=charge, operations=1)
        counted = {pk for pk, _tokens, _cost, ops in rows if ops}
        self.charged = {}
        # `hold.shards` is in the order of the levels (both stores write it so).
        for level, (pk, *_narrowed) in zip(self.levels, hold.shards, strict=False):
            sums = self.totals.get(level.key)
            if sums is None:
                continue
            sums.tokens_reserved -= hold.tokens
            sums.cost_reserved_micros -= hold.cost_micros
            if charge is not None and pk in counted:
                sums.tokens_used += charge[0]
                sums.cost_micros += charge[1]
                self.charged[level.key] = charge

    def tightest(self) -> tuple[Level | None, dict[str, int]]:
        """The level nearest its cap (by share), and per unit the least any level still
        allows (ledger units, by the budget body's `remaining_*` field)."""
        worst: tuple[float, Level] | None = None
        least: dict[str, int] = {}
        for level, unit, cap, in_use in self._shares():
            left = max(0, cap - in_use)
            least[unit.remaining] = min(least.get(unit.remaining, left), left)
            share = in_use / cap if cap else float("inf")
            if worst is None or share > worst[0]:
                worst = (share, level)
        return (worst[1] if worst else None), least


@dataclass(slots=True)
class SpendAsk:
    """The spend budgets a reservation must also hold, all or nothing WITH the session's
    reservation: the store writes both in one transaction (one statement on PostgreSQL,
    `spend_write_slow` when a shard is short) and leaves what it wrote in `written`. A
    hold on one level that another level then refuses would, for a moment, refuse calls
    that fit: the levels are one write, or the budgets are not exact."""

    levels: Sequence[Level]
    cost_micros: int  # the worst case priced (a session reservation may know no price)
    shard: int = field(default_factory=lambda: pick_shard())
    hold_id: uuid.UUID = field(default_factory=uuid.uuid4)
    written: Written | None = None

    @property
    def shard_pks(self) -> list[int] | None:
        """This worker's shards of the levels, if it knows them all (else: the slow write)."""
        return known_shards(self.levels, self.shard)

    def hold_of(self, *, pks: Sequence[int], tokens: int) -> SpendHoldRef:
        """The hold written on `pks` (in the order of the levels)."""
        shards = [
            [pk, level.rule.provider_name, level.rule.model_name]
            for pk, level in zip(pks, self.levels, strict=True)
        ]
        return SpendHoldRef(
            id=self.hold_id, shards=shards, tokens=tokens, cost_micros=self.cost_micros
        )

    def write_args(
        self, *, operation_id: uuid.UUID, tokens: int, expires_at: datetime
    ) -> dict[str, Any]:
        """The keyword arguments of `spend_write_slow` (and of the SQL's parameters)."""
        return {
            "levels": self.levels,
            "hold_id": self.hold_id,
            "operation_id": operation_id,
            "tokens": tokens,
            "cost_micros": self.cost_micros,
            "expires_at": expires_at,
            "shard": self.shard,
        }


# --- the ORM's write, grant, hand-back -----------------------------------------------------


Key = tuple[int, str, datetime]  # (budget, subject, period start): one period's ledger


def _periods_q(keys: Iterable[Key]) -> Q:
    """The shards of these periods."""
    condition = Q(pk__in=[])
    for budget_id, subject, start in keys:
        condition |= Q(budget_id=budget_id, subject=subject, period_start=start)
    return condition


def period_totals(keys: Iterable[Key]) -> dict[Key, SpendTotals]:
    """Each period's ledger summed over its shards (one query; absent: nothing yet). The
    one read of what a budget has spent and holds: the pipeline's slow write, the usage
    API, the gauges, the alerts and the admin use it."""
    rows = (
        SpendShard.objects.filter(_periods_q(keys))
        .values("budget_id", "subject", "period_start")
        .annotate(
            t_used=Sum("tokens_used"),
            c_used=Sum("cost_accrued_micros"),
            t_res=Sum("tokens_reserved"),
            c_res=Sum("cost_reserved_micros"),
        )
        .order_by()
    )
    return {
        (r["budget_id"], r["subject"], r["period_start"]): SpendTotals(
            tokens_used=r["t_used"] or 0,
            cost_micros=r["c_used"] or 0,
            tokens_reserved=r["t_res"] or 0,
            cost_reserved_micros=r["c_res"] or 0,
        )
        for r in rows
    }


def spend_totals(levels: Iterable[Level]) -> dict[Key, SpendTotals]:
    """`period_totals` of the levels' periods."""
    return period_totals(level.key for level in levels)


class _Columns(NamedTuple):
    """Where one unit lives on a period (cap, pool) and on its shards (allotment, used,
    reserved): the one map of the escrow's columns."""

    unit: Unit
    cap: str
    pool: str
    allot: str
    used: str
    reserved: str

    def in_use(self, row: SpendShard) -> int:
        return int(getattr(row, self.used)) + int(getattr(row, self.reserved))

    def short_by(self, row: SpendShard, amount: int) -> int:
        """How much more allotment the shard needs to take `amount` (≤ 0: none)."""
        return self.in_use(row) + amount - (getattr(row, self.allot) or 0)

    def reclaim(self, period: SpendPeriod, rows: list[SpendShard]) -> None:
        """Every shard's unused allotment back to the pool (in memory)."""
        for row in rows:
            slack = getattr(row, self.allot) - self.in_use(row)
            if slack > 0:
                setattr(row, self.allot, getattr(row, self.allot) - slack)
                setattr(period, self.pool, getattr(period, self.pool) + slack)


_UNITS = (
    _Columns(TOKENS, "max_tokens", "pool_tokens", "allot_tokens", "tokens_used", "tokens_reserved"),
    _Columns(
        COST,
        "max_cost_micros",
        "pool_cost_micros",
        "allot_cost_micros",
        "cost_accrued_micros",
        "cost_reserved_micros",
    ),
)


def _period_ensure(level: Level) -> SpendPeriod:
    """The level's period row, created with the whole cap in its pool by the first
    request of the period (two first requests at once: one creates, one reads)."""
    budget_id, subject, start = level.key
    lookup = {"budget_id": budget_id, "subject": subject, "period_start": start}
    found = SpendPeriod.objects.filter(**lookup).first()
    if found is not None:
        return found
    budget = SpendBudget.objects.get(pk=budget_id)  # its caps now, not the memo's
    tokens, cost = budget.max_tokens, budget.max_cost_micros
    try:
        with transaction.atomic():
            return SpendPeriod.objects.create(
                **lookup,
                max_tokens=tokens,
                max_cost_micros=cost,
                pool_tokens=tokens or 0,
                pool_cost_micros=cost or 0,
            )
    except IntegrityError:
        return SpendPeriod.objects.get(**lookup)


def spend_write_slow(
    *,
    levels: Sequence[Level],
    hold_id: uuid.UUID,
    operation_id: uuid.UUID,
    tokens: int,
    cost_micros: int,
    expires_at: datetime,
    shard: int,
) -> Written:
    """The write when this worker's shard of some budget had no room (or no row): one
    transaction that locks every level's period and shards (periods, then shards, each in
    pk order, as every writer locks shards), tops this worker's shard up from the pool
    where needed (taking back every shard's unused allotment first when the pool is
    short), then holds the worst case on all. BudgetExceeded when a budget cannot take
    it: its shards, summed under their locks, leave less than the worst case. Exact both
    ways, and final: no retry can starve behind other workers."""
    periods = {level.key: _period_ensure(level) for level in levels}
    amounts = {TOKENS: tokens, COST: cost_micros}
    _refuse_if_full(levels, periods, amounts)
    with transaction.atomic():
        locked = SpendPeriod.objects.select_for_update().filter(
            pk__in=[p.pk for p in periods.values()]
        )
        by_pk = {p.pk: p for p in locked.order_by("pk")}
        groups: dict[tuple[int, str, datetime], list[SpendShard]] = {}
        locking = SpendShard.objects.select_for_update().filter(_periods_q(lv.key for lv in levels))
        for row in locking.order_by("pk"):
            groups.setdefault((row.budget_id, row.subject, row.period_start), []).append(row)
        changed: dict[int, SpendShard] = {}  # by identity: a new row has no pk to hash
        mine = []
        for level in levels:
            period = by_pk[periods[level.key].pk]
            rows = groups.setdefault(level.key, [])
            mine.append(_top_up(level, period, rows, shard=shard, amounts=amounts, changed=changed))
        for row in mine:
            row.tokens_reserved += tokens
            row.cost_reserved_micros += cost_micros
            changed[id(row)] = row
        for period in by_pk.values():
            period.save(update_fields=["pool_tokens", "pool_cost_micros"])
        for row in changed.values():
            row.save()
        pks = [row.pk for row in mine]
        SpendHold.objects.create(
            id=hold_id,
            operation_id=operation_id,
            shards=pks,
            tokens=tokens,
            cost_micros=cost_micros,
            expires_at=expires_at,
        )
        totals = spend_totals(levels)
    # Should the caller's transaction roll a new row back, the fast write misses its pk
    # and the slow write makes the row again.
    _remember_shards(levels, shard, pks)
    shards = [
        [pk, level.rule.provider_name, level.rule.model_name]
        for pk, level in zip(pks, levels, strict=True)
    ]
    hold = SpendHoldRef(id=hold_id, shards=shards, tokens=tokens, cost_micros=cost_micros)
    return Written(hold=hold, totals=totals)


def _refuse_if_full(
    levels: Sequence[Level],
    periods: dict[tuple[int, str, datetime], SpendPeriod],
    amounts: dict[Unit, int],
) -> None:
    """Refuse without a lock when one read of the shards (one snapshot: an instant at
    which a single exact counter would have refused too) leaves less than the worst
    case: a spent budget refuses every further call this way, in parallel, instead of
    queueing them all on its locks."""
    totals = spend_totals(levels)
    for level in levels:
        if not level.rule.hard:
            continue
        sums = totals.get(level.key, SpendTotals())
        period = periods[level.key]
        for unit, cap in ((TOKENS, period.max_tokens), (COST, period.max_cost_micros)):
            if cap is not None and sums.in_use(unit) + amounts[unit] > cap:
                used, reserved = sums.used(unit), sums.in_use(unit) - sums.used(unit)
                raise _refusal(
                    level, unit=unit, used=used, reserved=reserved, cap=cap, amount=amounts[unit]
                )


def _top_up(
    level: Level,
    period: SpendPeriod,
    rows: list[SpendShard],
    *,
    shard: int,
    amounts: dict[Unit, int],
    changed: dict[int, SpendShard],
) -> SpendShard:
    """This worker's shard of `level` (created if new), with room for the amounts: from
    the pool, generously while it is full (a share of it), exactly near the end."""
    budget_id, subject, start = level.key
    mine = next((r for r in rows if r.shard == shard), None)
    if mine is None:
        mine = SpendShard(budget_id=budget_id, subject=subject, period_start=start, shard=shard)
        for columns in _UNITS:
            capped = level.rule.hard and getattr(period, columns.cap) is not None
            setattr(mine, columns.allot, 0 if capped else None)
        rows.append(mine)
        changed[id(mine)] = mine
    if not level.rule.hard:  # soft: nothing to allot, the row counts what is spent
        return mine
    share = 2 * settings.AURA["SPEND_SHARDS"]
    for columns in _UNITS:
        unit, cap, pool, allot = columns.unit, columns.cap, columns.pool, columns.allot
        if getattr(period, cap) is None or getattr(mine, allot) is None:
            continue
        amount = amounts[unit]
        need = columns.short_by(mine, amount)
        if need <= 0:
            continue
        if getattr(period, pool) < need:
            columns.reclaim(period, rows)
            changed.update((id(row), row) for row in rows)
            need = columns.short_by(mine, amount)
        if getattr(period, pool) < need:
            used = sum(getattr(r, columns.used) for r in rows)
            raise _refusal(
                level,
                unit=unit,
                used=used,
                reserved=sum(columns.in_use(r) for r in rows) - used,
                cap=getattr(period, cap),
                amount=amount,
            )
        grant = min(getattr(period, pool), max(need, getattr(period, pool) // share))
        setattr(mine, allot, getattr(mine, allot) + grant)
        setattr(period, pool, getattr(period, pool) - grant)
        changed[id(mine)] = mine
    return mine


def _refusal(
    level: Level, *, unit: Unit, used: int, reserved: int, cap: int, amount: int
) -> BudgetExceeded:
    projected = used + reserved + amount
    field_name = "max_tokens" if unit is TOKENS else "max_cost"
    problem = (
        f"{level.label} ({level.rule.period}) {field_name}: {unit.show(used)} {unit.charged} + "
        f"{unit.show(reserved)} reserved + {unit.show(amount)} for this operation exceeds the "
        f"cap of {unit.show(cap)} by {unit.show(projected - cap)}"
    )
    return BudgetExceeded(
        f"Budget exceeded: {problem}.", details={**level.details(), "caps": [problem]}
    )


def spend_hand_back(
    hold: SpendHoldRef,
    *,
    charge: tuple[int, int] | None,
    served: tuple[str, str] | None,
    operations: int = 1,
) -> bool:
    """Settle (`charge`) or release the hold, inside the caller's transaction: the
    reserved amounts come back only if this call deletes the hold row (settle, release
    and the expiry job race for it); the charge is made either way. Whether it deleted."""
    deleted, _ = SpendHold.objects.filter(pk=hold.id).delete()
    charges = sorted(hold.charges(served=served, charge=charge, operations=operations))
    for pk, tokens, cost, ops in charges:  # in pk order, as every writer locks shards
        updates: dict[str, Any] = {}
        if deleted:
            updates["tokens_reserved"] = F("tokens_reserved") - hold.tokens
            updates["cost_reserved_micros"] = F("cost_reserved_micros") - hold.cost_micros
        if tokens or cost or ops:
            updates["tokens_used"] = F("tokens_used") + tokens
            updates["cost_accrued_micros"] = F("cost_accrued_micros") + cost
            updates["operation_count"] = F("operation_count") + ops
        if updates:
            SpendShard.objects.filter(pk=pk).update(**updates)
    return bool(deleted)


def _hand_back_holds(holds: Iterable[SpendHold]) -> int:
    count = 0
    for row in holds:
        shards = [[pk, None, None] for pk in row.shards]  # released: no charge to narrow
        ref = SpendHoldRef(id=row.pk, shards=shards, tokens=row.tokens, cost_micros=row.cost_micros)
        with transaction.atomic():
            spend_hand_back(ref, charge=None, served=None)
        count += 1
    return count


def spend_release_expired(*, now: datetime, batch_size: int = 500) -> int:
    """Hand back holds whose worker died (past their expiry), on every level."""
    return _hand_back_holds(SpendHold.objects.filter(expires_at__lte=now)[:batch_size])


def spend_release_operation(*, operation_id: uuid.UUID) -> int:
    """Hand back every hold of one operation (see budget_release_operation)."""
    return _hand_back_holds(SpendHold.objects.filter(operation_id=operation_id))


def spend_recap(*, budget: SpendBudget) -> None:
    """A budget's caps changed: every period of it takes the new caps, every shard's
    unused allotment goes back to the pool and the pool is what the new cap leaves (it
    may be negative: then every reservation is refused until spending falls under)."""
    for period_pk in SpendPeriod.objects.filter(budget=budget).values_list("pk", flat=True):
        with transaction.atomic():
            period = SpendPeriod.objects.select_for_update().get(pk=period_pk)
            rows = list(
                SpendShard.objects.select_for_update()
                .filter(
                    budget_id=period.budget_id,
                    subject=period.subject,
                    period_start=period.period_start,
                )
                .order_by("pk")
            )
            period.max_tokens = budget.max_tokens
            period.max_cost_micros = budget.max_cost_micros
            for columns in _UNITS:
                limit = getattr(period, columns.cap) if budget.enforce_hard_limits else None
                for row in rows:
                    setattr(row, columns.allot, None if limit is None else columns.in_use(row))
                taken = sum(columns.in_use(row) for row in rows)
                setattr(period, columns.pool, 0 if limit is None else limit - taken)
            period.save()
            for row in rows:
                row.save(update_fields=["allot_tokens", "allot_cost_micros"])


def usd(micros: int | None) -> str | None:
    return None if micros is None else str(micros_to_usd(micros))


def notice_spend(keys: list[tuple[int, str, datetime]]) -> None:
    """After a finish: the budgets whose thresholds may have been crossed (alerts)."""
    from budgets.alerts import notice  # alerts import this module

    notice(keys)
