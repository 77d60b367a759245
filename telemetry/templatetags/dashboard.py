"""Number formatting for the dashboards: money, rates, latencies, changes."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template

from aura_orchestrator.admin import short_id as _short_id

register = template.Library()


@register.filter
def short_id(value, chars: int = 40) -> str:
    """A long id cut in its middle (head and tail kept), the whole in the title: the
    console's one helper (aura_orchestrator.admin.short_id)."""
    return _short_id(value, chars=int(chars))


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        return None


@register.filter
def usd(value) -> str:
    """Dollars with as many decimals as small amounts need: $1,234.56, $3.14, $0.0042."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    if amount == 0:
        return "$0"
    places = Decimal("0.01") if abs(amount) >= 1 else Decimal("0.0001")
    if 0 < abs(amount) < Decimal("0.0001"):
        places = Decimal("0.000001")
    rounded = amount.quantize(places, rounding=ROUND_HALF_UP)
    return f"-${-rounded:,}" if rounded < 0 else f"${rounded:,}"


@register.filter
def usd_exact(value) -> str:
    """Dollars to the micro-dollar, as stored."""
    amount = _decimal(value)
    return "—" if amount is None else f"${amount.quantize(Decimal('0.000001')):,}"


@register.filter
def pct(value, places: int = 1) -> str:
    """A 0..1 rate as a percentage."""
    try:
        return f"{float(value) * 100:.{int(places)}f}%"
    except (TypeError, ValueError):
        return "—"


@register.filter
def ms(value) -> str:
    """Milliseconds, switching to seconds past one second."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    if number >= 1000:
        return f"{number / 1000:.2f} s"
    return f"{number:.0f} ms"


@register.filter
def compact(value) -> str:
    """1234 -> 1.2k, 3456789 -> 3.5M."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= limit:
            return f"{number / limit:.1f}{suffix}"
    return f"{number:.0f}"


@register.filter
def change(kpi) -> str:
    """A KPI's change: "+12.5%" for amounts, "+1.2 pp" for rates, "new" without history."""
    if kpi.change is None:
        return "—"
    if kpi.change_is_points:
        return f"{kpi.change:+.1f} pp"
    return f"{kpi.change * 100:+.1f}%"


@register.filter
def kpi_value(kpi) -> str:
    if kpi.key == "cost":
        return usd(kpi.value)
    if kpi.key in ("cache_hit_rate", "error_rate"):
        return pct(kpi.value)
    if kpi.key == "p95_latency_ms":
        return ms(kpi.value)
    return f"{kpi.value:,}"


@register.filter
def kpi_previous(kpi) -> str:
    if kpi.key == "operations":
        return f"{kpi.previous:,}"
    return kpi_value(type(kpi)(**{**_fields(kpi), "value": kpi.previous}))


def _fields(kpi) -> dict:
    return {name: getattr(kpi, name) for name in kpi.__slots__}


@register.filter
def width(value) -> str:
    """A 0..1 share as a CSS width, clamped."""
    try:
        return f"{max(0.0, min(1.0, float(value))) * 100:.1f}%"
    except (TypeError, ValueError):
        return "0%"


@register.filter
def percent_width(value) -> str:
    """A 0..100 number as a CSS width, clamped."""
    try:
        return f"{max(0.0, min(100.0, float(value))):.1f}%"
    except (TypeError, ValueError):
        return "0%"


@register.filter
def ratio(part, whole) -> float:
    try:
        return float(part) / float(whole) if float(whole) else 0.0
    except (TypeError, ValueError):
        return 0.0


@register.filter
def label(value) -> str:
    """operation_type -> Operation type."""
    text = str(value or "").replace("_", " ")
    return text[:1].upper() + text[1:]
