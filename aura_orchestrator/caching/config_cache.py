"""Per-process memo of configuration reads on the hot path (API keys, presets, routes).

Configuration changes rarely and is read on every request: each of these reads cost a
query and most of a millisecond of ORM CPU. A memo entry is valid while

- the configuration version is unchanged: a counter in Django's cache, bumped by
  post_save/post_delete of every model the memos are built from (at once, and again when
  the transaction commits, so a reader between the two cannot keep stale data). With
  Redis (production) an admin edit or a revocation reaches every worker within
  VERSION_POLL_SECONDS (0.25 s; the process that made it at once); with the local-memory
  cache (embedded default) only the process that made it;
- and it is younger than AURA["CONFIG_CACHE_SECONDS"] (default 5 s): the bound on
  staleness when the change was made by another process without a shared cache, or by a
  queryset `.update()` that sends no signal. 0 turns the memo off.

Inside `memo_only()` a read that would have to load (a miss, an expired entry, the memo
turned off) raises `MemoMiss` instead of calling `load()`: code on the event loop uses it
to read configuration without ever running a query there, and hands the request to a
thread when it raises (aura_orchestrator/fastpath).
"""

import logging
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from aura_orchestrator.db import db

T = TypeVar("T")
logger = logging.getLogger(__name__)

VERSION_KEY = "aura:config-version"
MAX_ENTRIES = 10_000  # a bound on memory, whatever keys callers present
_MISSING = object()
_memo: dict[Hashable, tuple[float, object, object]] = {}  # key -> (expires, version, value)
_grace: dict[Hashable, float] = {}  # key -> until when an expired entry is still served
_memo_only: ContextVar[bool] = ContextVar("aura_config_memo_only", default=False)


class MemoMiss(Exception):
    """Inside `memo_only()`: the value is not in the memo and would need a load."""


@contextmanager
def memo_only() -> Iterator[None]:
    """Within this block (this task or thread only), `memoized()` never calls `load()`:
    it raises `MemoMiss`. Callers with other side effects check `is_memo_only()`."""
    token = _memo_only.set(True)
    try:
        yield
    finally:
        _memo_only.reset(token)


def is_memo_only() -> bool:
    return _memo_only.get()


async def memo_or_db(fn: Callable[..., T], /, **kwargs: object) -> T:
    """`fn(**kwargs)` from the memo, on the event loop (no query); when it must load
    something, again in a db() thread. The pipeline's reads of configuration."""
    try:
        with memo_only():
            return fn(**kwargs)
    except MemoMiss:
        return await db(fn, **kwargs)


def _ttl() -> float:
    return float(settings.AURA.get("CONFIG_CACHE_SECONDS", 5))


# The version read from the shared cache is itself kept this long: every memo read of a
# request (key, preset, routes, budget) would otherwise be a Redis round trip, and Django's
# Redis cache builds a client per call (~10 % of a request's CPU, measured in bench/inproc).
VERSION_POLL_SECONDS = 0.25
# How long an expired entry (same version) keeps being served while one caller reloads it.
REFRESH_GRACE_SECONDS = 1.0
_version_seen: tuple[float, object] | None = None  # (until, version)


def config_version() -> object:
    """The shared configuration version, read at most every VERSION_POLL_SECONDS: another
    worker's edit applies here within that (this process's own edits at once)."""
    global _version_seen
    now = time.monotonic()
    seen = _version_seen
    if seen is not None and now < seen[0]:
        return seen[1]
    try:
        version = cache.get(VERSION_KEY, 0)
    except Exception:  # the shared cache is down: read through, as without the memo
        logger.warning("config version unavailable; memo bypassed", exc_info=True)
        return object()  # equal to no stored version
    _version_seen = (now + VERSION_POLL_SECONDS, version)
    return version


def memoized(key: Hashable, load: Callable[[], T], *, version: object = _MISSING) -> T:
    """`load()`'s value, computed at most once per version and TTL in this process (None
    is never kept). The value must not be mutated: concurrent requests share it."""
    ttl = _ttl()
    no_load = _memo_only.get()  # memo_only(): the event loop's reads
    if ttl <= 0:
        if no_load:
            raise MemoMiss(key)
        return load()
    if version is _MISSING:
        version = config_version()
    now = time.monotonic()
    hit = _memo.get(key)
    current = hit is not None and hit[1] == version
    # Only its age against it (the version is current), in memo_only(): one caller goes
    # to reload it; for REFRESH_GRACE_SECONDS the others keep the value they had, so a TTL
    # expiry under hundreds of requests in flight is one reload, not a herd.
    if hit is not None and current and (hit[0] > now or (no_load and _grace.get(key, 0.0) > now)):
        return hit[2]  # type: ignore[return-value]
    if no_load:
        if current:
            _grace[key] = now + REFRESH_GRACE_SECONDS
        raise MemoMiss(key)
    value = load()
    if value is None:
        return value  # misses are not kept: unknown keys must not fill the memo
    if len(_memo) >= MAX_ENTRIES:
        _memo.clear()
        _grace.clear()
    _memo[key] = (now + ttl, version, value)
    _grace.pop(key, None)
    return value


def forget(key: Hashable) -> None:
    _memo.pop(key, None)


def clear() -> None:
    global _version_seen
    _memo.clear()
    _grace.clear()
    _version_seen = None


def bump_version(**_ignored) -> None:
    """Invalidate every memo (in every process sharing the cache)."""
    _bump()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_bump)


def _bump() -> None:
    global _version_seen
    _memo.clear()
    _grace.clear()
    _version_seen = None
    try:
        try:
            cache.incr(VERSION_KEY)
        except ValueError:  # absent (first change, or evicted): any new value invalidates
            cache.set(VERSION_KEY, time.time_ns(), timeout=None)
    except Exception:  # the shared cache is down: other workers catch up within the TTL
        logger.warning("could not bump the config version", exc_info=True)


def connect(*models) -> None:
    """Bump the version whenever one of `models` is saved or deleted."""
    for model in models:
        uid = f"aura-config-{model._meta.label}"
        post_save.connect(bump_version, sender=model, dispatch_uid=uid + "-save")
        post_delete.connect(bump_version, sender=model, dispatch_uid=uid + "-delete")
