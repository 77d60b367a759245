"""UTC hours: the rollup watermark and retention, and a range cut into rolled-up whole
hours and the raw rows around them. Ranges are half-open, `since <= t < until`."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q

from telemetry.models import RollupWatermark

HOUR = timedelta(hours=1)
WATERMARK = "hourly"


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def rollup_watermark() -> datetime | None:
    """Hours before this are rolled up and final; None until the rollup job first ran."""
    return (
        RollupWatermark.objects.filter(name=WATERMARK)
        .values_list("complete_until", flat=True)
        .first()
    )


def retention_cutoff(now: datetime) -> datetime:
    """Raw rows before this hour may be pruned; their rollups are final."""
    return floor_hour(now - timedelta(days=settings.AURA["TELEMETRY_RETENTION_DAYS"]))


def time_filter(name: str, since: datetime | None, until: datetime | None) -> Q:
    """`name` within [since, until); an open end when None."""
    q = Q()
    if since is not None:
        q &= Q(**{f"{name}__gte": since})
    if until is not None:
        q &= Q(**{f"{name}__lt": until})
    return q


def intervals_filter(name: str, intervals: list[tuple[datetime, datetime]]) -> Q:
    """`name` within any of the (non-empty) half-open intervals."""
    q = time_filter(name, *intervals[0])
    for start, end in intervals[1:]:
        q |= time_filter(name, start, end)
    return q


@dataclass(frozen=True, slots=True)
class Split:
    """A range cut into whole rolled-up hours [rollup_from, rollup_to) and raw edges."""

    rollup_from: datetime | None
    rollup_to: datetime

    def raw_edges(self, since: datetime | None, until: datetime | None) -> Q:
        before = (
            time_filter("started_at", since, self.rollup_from)
            if self.rollup_from is not None
            else None
        )
        after = time_filter("started_at", self.rollup_to, until)
        return after if before is None else before | after

    def rollup_range(self) -> Q:
        return time_filter("bucket_start", self.rollup_from, self.rollup_to)


def split_range(since: datetime | None, until: datetime | None) -> Split | None:
    """Which whole hours of the range rollups can answer; None when none can."""
    watermark = rollup_watermark()
    if watermark is None:
        return None
    rollup_from = ceil_hour(since) if since is not None else None
    rollup_to = min(floor_hour(until), watermark) if until is not None else watermark
    if rollup_from is not None and rollup_from >= rollup_to:
        return None
    return Split(rollup_from=rollup_from, rollup_to=rollup_to)


def overview_intervals(
    *, previous_since: datetime, since: datetime, until: datetime, watermark: datetime | None
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]] | None:
    """[previous_since, until) cut into whole rolled-up hours and raw intervals: the hours
    before the watermark except the partial ones at previous_since and since (each period
    must be summed on its own) and until. None when the current period [since, until)
    holds no rolled-up hour."""
    if watermark is None:
        return None
    end = min(floor_hour(until), watermark)
    rolled = [
        (a, b)
        for a, b in (
            (ceil_hour(previous_since), min(floor_hour(since), end)),
            (ceil_hour(since), end),
        )
        if a < b
    ]
    if not rolled or rolled[-1][0] < since:
        return None
    raw, moment = [], previous_since
    for a, b in rolled:
        if moment < a:
            raw.append((moment, a))
        moment = b
    if moment < until:
        raw.append((moment, until))
    return rolled, raw
