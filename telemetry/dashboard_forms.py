"""Query-string filters of the dashboards. Bad input never fails a page: the form reports
what was wrong and the page falls back to the default (last 24 hours, every project)."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django import forms
from django.utils import timezone

from telemetry.dashboard_selectors import SESSION_STATUSES

RANGES = {
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
DEFAULT_RANGE = "24h"
MAX_SPAN = timedelta(days=400)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


@dataclass(frozen=True, slots=True)
class Filters:
    range: str  # one of RANGES, or "custom"
    since: datetime
    until: datetime
    project_id: int | None
    errors: list[str]

    @property
    def span_label(self) -> str:
        """The range's length in words: "24 hours", "7 days", "36 hours"."""
        hours = round((self.until - self.since).total_seconds() / 3600)
        if hours % 24 == 0 and hours >= 48:
            return f"{hours // 24} days"
        return "hour" if hours == 1 else f"{hours} hours"

    @property
    def label(self) -> str:
        if self.range in RANGES:
            return RANGES[self.range][0]
        return f"{self.since:%b %d, %Y %H:%M} to {self.until:%b %d, %Y %H:%M} UTC"


class OverviewFilterForm(forms.Form):
    range = forms.ChoiceField(
        choices=[(k, v[0]) for k, v in RANGES.items()] + [("custom", "Custom")], required=False
    )
    since = forms.DateTimeField(required=False, input_formats=DATE_FORMATS)
    until = forms.DateTimeField(required=False, input_formats=DATE_FORMATS)
    project = forms.IntegerField(required=False, min_value=1, max_value=2**62)

    def __init__(self, *args, project_ids: set[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.project_ids = project_ids

    def clean_project(self) -> int | None:
        project = self.cleaned_data.get("project")
        if project is not None and project not in self.project_ids:
            raise forms.ValidationError("There is no project with this id.")
        return project

    def clean_until(self) -> datetime | None:
        until = self.cleaned_data.get("until")
        # A bare date means "up to the end of that day".
        if until is not None and _DATE_ONLY.match(self.data.get("until") or ""):
            until += timedelta(days=1)
        return until

    def clean(self):
        # Form.clean() returns cleaned_data (the stubs allow None, for overrides).
        data = cast(dict[str, Any], super().clean())
        since, until = data.get("since"), data.get("until")
        if "since" in self.errors or "until" in self.errors:
            return data
        custom = since is not None or until is not None or data.get("range") == "custom"
        if not custom:
            return data
        now = timezone.now()
        if since is None:
            self.add_error("since", "A custom range needs a start date.")
            return data
        until = until or now
        if since < EARLIEST or until < EARLIEST:
            self.add_error("since", "Dates before the year 2000 are not supported.")
        elif until <= since:
            self.add_error("until", "The end of the range must come after its start.")
        elif until - since > MAX_SPAN:
            self.add_error("until", f"A range may span at most {MAX_SPAN.days} days.")
        elif since > now:
            self.add_error("since", "The range starts in the future.")
        data["until"] = until
        return data


def overview_filters(params, *, project_ids: set[int]) -> Filters:
    """The range and project the query string asks for, or the defaults with messages."""
    form = OverviewFilterForm(params, project_ids=project_ids)
    now = timezone.now()
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    errors = [
        f"{_field_label(field)}: {message}" if field != "__all__" else str(message)
        for field, messages in form.errors.items()
        for message in messages
    ]
    project_id = form.cleaned_data.get("project")  # kept when only another field failed
    if valid and data.get("since") is not None:
        return Filters("custom", data["since"], data["until"], project_id, errors)
    key = data["range"] if data.get("range") in RANGES else DEFAULT_RANGE
    return Filters(key, now - RANGES[key][1], now, project_id, errors)


def _field_label(field: str) -> str:
    return {"since": "From", "until": "To", "project": "Project", "range": "Range"}.get(
        field, field
    )


class SessionFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, strip=True)
    status = forms.ChoiceField(choices=list(SESSION_STATUSES.items()), required=False)
    project = forms.IntegerField(required=False, min_value=1, max_value=2**62)
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)


def page_number(params) -> int:
    """A page number from the query string; anything odd is page 1."""
    raw = params.get("page") or "1"
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 100_000 else 1
