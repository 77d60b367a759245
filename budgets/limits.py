"""Which rate limits apply to a call, as the windows' checks (aura_orchestrator/ratelimit).

The project's RateLimit rows are memoized like its spend budgets (caching/config_cache:
an edit bumps the version), and chosen by the same scope rule (budgets.spending:
scope_applies): the project's, the key's, the end user's own else the default one, each
narrowed one only when the call's chain holds its model.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from aura_orchestrator.caching.config_cache import memoized
from aura_orchestrator.ratelimit.window import Check, Kind
from budgets.limit_models import ALLOW_LISTS, RateLimit, model_patterns
from budgets.spend_models import Scope
from budgets.spending import end_users_own, scope_applies, scope_label


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A RateLimit as the per-process memo keeps it."""

    limit_id: int
    windows_id: str  # names its windows (RateLimit.windows_id)
    scope: str
    api_key_id: int | None
    end_user: str
    model_name: str | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_in_flight: int | None
    label: str
    # (what, fnmatch patterns) per ALLOW_LISTS entry; empty patterns: everything allowed
    allow_lists: tuple[tuple[str, tuple[str, ...]], ...] = ()
    provider_name: str | None = None  # rate limits narrow by model only (ScopedRule)


def _load(project_id: int) -> tuple[LimitRule, ...]:
    rows = RateLimit.objects.filter(project_id=project_id, active=True).select_related(
        "project", "api_key"
    )
    return tuple(
        LimitRule(
            limit_id=r.pk,
            windows_id=r.windows_id.hex,
            scope=r.scope,
            api_key_id=r.api_key_id,
            end_user=r.end_user,
            model_name=r.model_name or None,
            requests_per_minute=r.requests_per_minute,
            tokens_per_minute=r.tokens_per_minute,
            max_in_flight=r.max_in_flight,
            label=scope_label(r),
            allow_lists=tuple(
                (what, model_patterns(getattr(r, name))) for name, what in ALLOW_LISTS.items()
            ),
        )
        for r in rows
    )


def limit_rules_of(project_id: int) -> tuple[LimitRule, ...]:
    return memoized(("rate-limits", project_id), lambda: _load(project_id))


def checks_for(
    *,
    project_id: int,
    api_key_id: int | None,
    end_user: str | None,
    models: Iterable[str],
    tokens: int,
) -> list[Check]:
    """Every window a call must pass (`tokens`: its worst case; `models`: its chain's)."""
    rules = limit_rules_of(project_id)
    if not rules:
        return []
    models = set(models)
    own = end_users_own(rules, end_user=end_user)
    checks = []
    for rule in rules:
        if not scope_applies(rule, api_key_id=api_key_id, end_user=end_user, own=own):
            continue
        if rule.model_name is not None and rule.model_name not in models:
            continue
        subject = (end_user or "") if rule.scope == Scope.DEFAULT_END_USER else ""
        label = rule.label if not subject else f"end_user:{subject}"
        key = f"{rule.windows_id}:{subject}"
        if rule.requests_per_minute is not None:
            checks.append(
                Check(f"{key}:requests", Kind.REQUESTS, rule.requests_per_minute, scope=label)
            )
        if rule.tokens_per_minute is not None:
            checks.append(
                Check(f"{key}:tokens", Kind.TOKENS, rule.tokens_per_minute, tokens, label)
            )
        if rule.max_in_flight is not None:
            checks.append(Check(f"{key}:in_flight", Kind.IN_FLIGHT, rule.max_in_flight, 1, label))
    return checks


@dataclass(frozen=True, slots=True)
class AllowList:
    """One limit set's list of the models, providers or operation types its calls may use."""

    label: str  # the limit set's scope, as refusals name it
    what: str  # ALLOW_LISTS' value: "models", "providers", "operation types"
    patterns: tuple[str, ...]

    def allows(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class AccessRules:
    """The allow-lists that apply to a caller (every one must allow)."""

    lists: tuple[AllowList, ...]

    def refusal(self, what: str, name: str) -> str | None:
        """Why `name` (a model, provider or operation type: `what`) is refused, naming
        what is allowed; None when every list of that kind allows it."""
        for allow in self.lists:
            if allow.what == what and not allow.allows(name):
                return (
                    f"{what.capitalize()[:-1]} {name!r} is not allowed for {allow.label}: it "
                    f"may use {', '.join(allow.patterns)}."
                )
        return None

    def allows_route(self, provider_name: str, model_name: str) -> bool:
        return (
            self.refusal("providers", provider_name) is None
            and self.refusal("models", model_name) is None
        )


def access_rules_for(
    *, project_id: int, api_key_id: int | None, end_user: str | None
) -> AccessRules:
    """The allow-lists of every limit set that applies to this key and end user."""
    rules = limit_rules_of(project_id)
    own = end_users_own(rules, end_user=end_user)
    return AccessRules(
        lists=tuple(
            AllowList(rule.label, what, patterns)
            for rule in rules
            if scope_applies(rule, api_key_id=api_key_id, end_user=end_user, own=own)
            for what, patterns in rule.allow_lists
            if patterns
        )
    )
