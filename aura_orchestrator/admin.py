"""Shared pieces of the operations console: audited change messages, display helpers.

The apps' own `admin.py` files register their models; this module only holds what they
share (Django's admin autodiscovery imports it too, harmlessly: it registers nothing).
"""

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import cast

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import construct_change_message
from django.db.models import Model
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import override as translation_override

from aura_orchestrator.money import micros_to_usd

_MAX_VALUE_CHARS = 80


def value_text(field: forms.Field | None, value) -> str:
    """A form value as an operator reads it in the history: choices by label, no repr."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(field, forms.ModelChoiceField) and not isinstance(value, Model):
        if field.queryset is not None:
            value = field.queryset.filter(pk=value).first() or value
    elif isinstance(field, forms.ChoiceField):
        value = dict(cast(Iterable[tuple[object, object]], field.choices)).get(value, value)
    if isinstance(value, dt.datetime):
        value = value.isoformat(sep=" ", timespec="seconds")
    text = str(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def form_diff(form: forms.BaseForm, names: list[str]) -> list[str]:
    """`name: old → new` for each changed field, by field name (the name the API and the
    docs use); a password-type field (a secret) is only `name: replaced`. `form.initial`
    still holds the stored values: it is taken when the form is built, before the
    instance is updated."""
    lines = []
    for name in names:
        field = form.fields.get(name)
        if field is not None and isinstance(field.widget, forms.PasswordInput):
            lines.append(f"{name}: replaced")  # a secret typed in: never its value
            continue
        old = form.initial.get(name, field.initial if field is not None else None)
        if field is not None and callable(old):
            old = old()
        new = form.cleaned_data.get(name)
        lines.append(f"{name}: {value_text(field, old)} → {value_text(field, new)}")
    return lines


class AuditedChangesMixin:
    """History entries that say what changed, e.g. "temperature: 0.7 → 0.5".

    Django records only the names of changed fields; operators auditing a preset or a
    price want the values. The message keeps Django's JSON structure (so inline
    additions and deletions still render), with `old → new` in place of bare labels.
    Saves from the change form and from list_editable both pass through here.
    """

    def construct_change_message(self, request, form, formsets, add=False):
        message = construct_change_message(form, formsets, add)
        if add:
            return message
        with translation_override(None):
            for entry in message:
                changed = entry.get("changed")
                if changed is None:
                    continue
                if "object" not in changed:
                    changed["fields"] = form_diff(form, form.changed_data)
                    continue
                changed_object: object = changed["object"]  # a str (the stubs say a list)
                for formset in formsets or []:
                    for inline_form in formset.initial_forms:
                        if (
                            inline_form.has_changed()
                            and str(inline_form.instance) == changed_object
                        ):
                            changed["fields"] = form_diff(inline_form, inline_form.changed_data)
        return message


class AuraModelAdmin(AuditedChangesMixin, admin.ModelAdmin):
    """Base of every admin in the console."""

    list_per_page = 50


def usd(micros: int | None) -> str:
    """Integer micro-dollars as `$0.001234` (exact; never a float)."""
    return "—" if micros is None else f"${micros_to_usd(micros)}"


def usd_decimal(amount: Decimal | None) -> str:
    return "—" if amount is None else f"${amount}"


def usage_bar(fraction: float | None) -> str:
    """A small horizontal bar for a 0..1+ share of a cap (amber past 70 %, red past 90 %),
    its percentage beside it on the same line (static/admin-console/console.css)."""
    if fraction is None:
        return "—"
    percent = max(0.0, fraction * 100)
    level = "over" if percent >= 90 else "near" if percent >= 70 else "ok"
    return format_html(
        '<span class="usage-bar usage-{}" title="{}% of cap">'
        '<span class="usage-track"><span style="width:{}%"></span></span>'
        '<span class="usage-pct">{}%</span></span>',
        level,
        f"{percent:.1f}",
        f"{min(percent, 100):.0f}",
        f"{percent:.0f}",
    )


def short_id(
    value: object, *, chars: int = 16, title: str | None = None, keep_end: bool = True
) -> str:
    """A long id (UUID, session id, hash, URL) cut to about `chars` characters on one
    line, its head and tail kept (ids often differ at the end; `keep_end=False` for prose
    such as an error message), the full value in the title shown on hover. Changelists
    use it so one long id neither widens the table past the window nor wraps over several
    lines; the change page shows the whole value."""
    if value is None or value == "":
        return "—"
    text = str(value)
    shown = text
    if len(text) > chars:
        tail = max(4, chars // 3) if keep_end else 0
        shown = f"{text[: chars - tail - 1]}…{text[len(text) - tail :]}"
    css = "short-id" if keep_end else "short-id short-text"
    return format_html('<span class="{}" title="{}">{}</span>', css, title or text, shown)


class ExpiryFilter(admin.SimpleListFilter):
    """Rows by `expires_at` against now; subclasses name the two states."""

    title = "state"
    parameter_name = "expired"
    live_label = "Live"
    expired_label = "Expired"

    def lookups(self, request, model_admin):
        return [("no", self.live_label), ("yes", self.expired_label)]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "no":
            return queryset.filter(expires_at__gt=now)
        return queryset
