"""Plain JSON values from our result objects: money as 6-decimal strings, ISO times."""

import datetime as dt
import uuid
from decimal import Decimal

from aura_orchestrator.money import MICROS


def jsonable(value):
    if isinstance(value, Decimal):
        return str(value.quantize(MICROS))
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
