"""Dates as the console shows them: ISO order, 24-hour, one short line ("2026-12-08
14:03:07" rather than "Dec. 8, 2026, 2:03 p.m."), so date columns stay narrow and sort
as they read. Input formats stay Django's."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
