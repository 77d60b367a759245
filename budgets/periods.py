"""When a spend budget's period begins and ends: calendar days, ISO weeks (Monday) and
months in the project's time zone, or none (one lifetime period). Pure, except `now`,
the one clock of spend budgets: tests move it forward across a boundary in the server
processes themselves (`AURA_CLOCK_OFFSET_FILE`, never set in production)."""

import os
import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone

LIFETIME_START = datetime(1970, 1, 1, tzinfo=UTC)  # the one period of `none`


@lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def window(period: str, *, time_zone: str, now: datetime) -> tuple[datetime, datetime | None]:
    """The period holding `now`: its start, and when it resets (its end; None for none).
    Both in UTC. A day that a DST change shortens or lengthens is still midnight to
    midnight local time."""
    if period == "none":
        return LIFETIME_START, None
    local = now.astimezone(zone(time_zone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if period == "day":
        start, end = day, _midnight_after(day, days=1)
    elif period == "week":
        start = _midnight_after(day, days=-day.weekday())
        end = _midnight_after(start, days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return start.astimezone(UTC), end.astimezone(UTC)


def _midnight_after(day: datetime, *, days: int) -> datetime:
    """Local midnight `days` days from `day` (wall-clock arithmetic, then re-zoned)."""
    moved = (day.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=day.tzinfo)
    return moved


_offset: tuple[float, float] = (-1.0, 0.0)  # (mtime of the offset file, offset seconds)


def now() -> datetime:
    """The clock of spend budgets: `timezone.now()`, moved by the number of seconds in
    `AURA_CLOCK_OFFSET_FILE` when that test setting is set (read again when it changes)."""
    path = settings.AURA["CLOCK_OFFSET_FILE"]
    current = timezone.now()
    if not path:
        return current
    global _offset
    try:
        mtime = os.stat(path).st_mtime
        if mtime != _offset[0]:
            with open(path) as handle:
                _offset = (mtime, float(handle.read().strip() or 0))
    except (OSError, ValueError):
        return current
    return current + timedelta(seconds=_offset[1])
