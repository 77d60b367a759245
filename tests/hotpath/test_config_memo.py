"""The per-process memo of keys, presets and routes (caching/config_cache.py): changes
made through the ORM apply to the very next request of the process that made them."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aura_orchestrator.caching import config_cache
from aura_orchestrator.catalog.selectors import route_chain_resolve
from aura_orchestrator.catalog.services import provider_configure
from aura_orchestrator.tenancy.selectors import api_key_authenticate
from aura_orchestrator.tenancy.services import api_key_revoke
from presets.models import OperationPreset
from presets.operation_types import OperationType
from presets.selectors import preset_get


def test_a_known_key_is_authenticated_without_a_query_the_second_time(api_key):
    assert api_key_authenticate(raw_key=api_key.raw_key).pk == api_key.api_key.pk
    with CaptureQueriesContext(connection) as queries:
        assert api_key_authenticate(raw_key=api_key.raw_key).pk == api_key.api_key.pk
    assert len(queries) == 0


def test_a_revoked_key_answers_none_on_the_next_request(api_key):
    assert api_key_authenticate(raw_key=api_key.raw_key) is not None
    api_key_revoke(api_key=api_key.api_key)
    assert api_key_authenticate(raw_key=api_key.raw_key) is None


def test_an_unknown_key_is_not_memoized(db):
    raw = "aura_deadbeef_" + "x" * 43
    assert api_key_authenticate(raw_key=raw) is None
    assert not any(k[0] == "api-key" for k in config_cache._memo)


def test_a_preset_edit_applies_to_the_next_read(db):
    before = preset_get(operation_type=OperationType.PLANNING)
    row = OperationPreset.objects.filter(operation_type=OperationType.PLANNING).first()
    if row is None:  # a flushed test database has no seeded rows
        row = OperationPreset(
            operation_type=OperationType.PLANNING,
            temperature=before.temperature,
            top_p=before.top_p,
            timeout_seconds=before.timeout_seconds,
            max_retries=before.max_retries,
            cache_enabled=before.cache_enabled,
            cache_ttl_seconds=before.cache_ttl_seconds,
        )
    row.max_tokens = before.max_tokens + 1
    row.save()
    assert preset_get(operation_type=OperationType.PLANNING).max_tokens == before.max_tokens + 1


def test_a_provider_edit_applies_to_the_next_route_resolution(provider):
    first = route_chain_resolve(provider_names=None, model=None)[0]
    provider_configure(
        name="primary",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key_env="TEST_PRIMARY_API_KEY",
        model="sim-gpt",
        input_price=Decimal("3"),
        output_price=Decimal("4"),
        make_default=True,
    )
    second = route_chain_resolve(provider_names=None, model=None)[0]
    assert first.base_url != second.base_url == "http://127.0.0.1:9/v1"
    assert second.input_price == Decimal("3")


def test_a_zero_ttl_turns_the_memo_off(settings, api_key):
    settings.AURA = {**settings.AURA, "CONFIG_CACHE_SECONDS": 0}
    api_key_authenticate(raw_key=api_key.raw_key)
    with CaptureQueriesContext(connection) as queries:
        api_key_authenticate(raw_key=api_key.raw_key)
    assert len(queries) >= 1


@pytest.mark.parametrize("count", [config_cache.MAX_ENTRIES + 5])
def test_the_memo_is_bounded(count):
    for i in range(count):
        config_cache.memoized(("test", i), lambda i=i: i)
    assert len(config_cache._memo) <= config_cache.MAX_ENTRIES


def test_an_expired_entry_is_reloaded_by_one_caller_while_the_others_keep_it(
    db, settings, monkeypatch
):
    """On the event loop (memo_only) a TTL expiry must not send every request in flight
    to a thread: the first caller reloads, the others keep the value for a grace period.
    A version change is different: nobody may keep the old value."""
    settings.AURA = {**settings.AURA, "CONFIG_CACHE_SECONDS": 5}
    clock = [1000.0]
    monkeypatch.setattr(config_cache.time, "monotonic", lambda: clock[0])
    loads = []
    assert config_cache.memoized("k", lambda: loads.append(1) or "v1") == "v1"
    clock[0] += 6  # past the TTL, same version
    with config_cache.memo_only():
        with pytest.raises(config_cache.MemoMiss):
            config_cache.memoized("k", lambda: "never")
        assert config_cache.memoized("k", lambda: "never") == "v1"  # the grace
        clock[0] += config_cache.REFRESH_GRACE_SECONDS + 0.1
        with pytest.raises(config_cache.MemoMiss):  # nobody reloaded: the next one goes
            config_cache.memoized("k", lambda: "never")
    assert config_cache.memoized("k", lambda: "v2") == "v2"  # the reload, in a thread
    config_cache.bump_version()
    with config_cache.memo_only(), pytest.raises(config_cache.MemoMiss):
        config_cache.memoized("k", lambda: "never")
