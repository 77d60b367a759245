"""Reads: statistics over operations, time series and breakdowns for the dashboards.

Ranges are half-open, `since <= started_at < until`, in UTC hours for bucketing.

Two sources answer the same questions:

- **raw** rows (`OperationTelemetry`): every total exact, and exact percentiles with
  PostgreSQL's `percentile_cont` (on SQLite the same definition, computed from the two
  closest ranks);
- **rollups** (`TelemetryRollup`, one row per hour, project, provider, model and type) for
  the whole hours before the rollup watermark, plus the raw rows of the partial hours at
  the edges. Totals stay exact; percentiles are interpolated inside the latency
  histogram's buckets, so they are approximate.

`statistics` reads raw rows unless the range is long (more than
`AURA["STATISTICS_RAW_MAX_DAYS"]` days), holds many rows (more than
`AURA["STATISTICS_RAW_MAX_ROWS"]`, judged from the rollups), or reaches back past the raw
retention; `Statistics.source` says which. Session statistics are always raw.

The modules, each importing only those above it:

- `percentiles`: percentile_cont's definition and the histogram's approximation (pure);
- `hours`: UTC hours, the watermark and retention, a range split into rolled-up hours;
- `vendor`: the only module that asks which database it runs on (`percentile_cont`,
  `GROUPING SETS`, `SET LOCAL work_mem`, the planner's row estimate, and the portable
  equivalents);
- `sums`: the rollup-shaped sums of raw rows or rollups, and the two-query read;
- `stats`: `statistics`; `charts`: `timeseries`, `breakdown`;
- `overview_passes`: `overview`, the dashboard's two passes.

Import from the package: the names below are the interface.
"""

from telemetry.selectors.charts import BREAKDOWN_FIELDS, breakdown, timeseries
from telemetry.selectors.hours import (
    HOUR,
    WATERMARK,
    ceil_hour,
    floor_hour,
    overview_intervals,
    retention_cutoff,
    rollup_watermark,
)
from telemetry.selectors.overview_passes import OverviewData, overview
from telemetry.selectors.percentiles import continuous_percentile, histogram_percentile
from telemetry.selectors.stats import Statistics, statistics, telemetry_session_exists
from telemetry.selectors.sums import UNNAMED, raw_sums

__all__ = [
    "BREAKDOWN_FIELDS",
    "HOUR",
    "UNNAMED",
    "WATERMARK",
    "OverviewData",
    "Statistics",
    "breakdown",
    "ceil_hour",
    "continuous_percentile",
    "floor_hour",
    "histogram_percentile",
    "overview",
    "overview_intervals",
    "raw_sums",
    "retention_cutoff",
    "rollup_watermark",
    "statistics",
    "telemetry_session_exists",
    "timeseries",
]
