"""Strict request bodies, declared once: a `Shape` is a table of fields that parses a JSON
value (from `jsonbody.parse_json_body`) and describes itself as an OpenAPI schema, so
what is accepted and what is documented cannot drift apart.

Strict means JSON's own types: no text from a number, no boolean from "true", no integer
from 5.0 (a number field takes 1 as well as 1.0), and a field the table does not name is
refused. Every problem of a body is collected, then reported at once: a 400
`invalid_request` with `details.fields` = {"path": ["message"]}, paths named as
`jsonbody` names them (`custom_preset.max_tokens`, `providers[0]`, `body`).
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, cast

from aura_orchestrator import errors
from aura_orchestrator.api.jsonbody import Path, field_path, schema_problem
from presets.operation_types import OperationType, parse_operation_type

MISSING: Any = object()  # no default: an absent optional field stays absent
MAX_PROBLEMS = 50  # a body of a thousand unknown keys gets a bounded answer
Problems = dict[str, list[str]]
SchemaRef = Callable[["Shape"], dict]  # a nested shape's schema (or its $ref)


class Invalid(Exception):
    """One value's problem; the shape records it under the value's path."""


def record(problems: Problems, where: str, message: str) -> None:
    """One problem under its path (`custom_preset.max_tokens`), up to MAX_PROBLEMS."""
    if len(problems) < MAX_PROBLEMS:
        problems.setdefault(where, []).append(message)


def _record(problems: Problems, path: Path, message: str) -> None:
    record(problems, field_path(path), message)


def _bounded(schema: dict, low, high) -> dict:
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def _check_range(value, low, high) -> None:
    if low is not None and value < low:
        raise Invalid(f"Must be at least {low}.")
    if high is not None and value > high:
        raise Invalid(f"Must be at most {high}.")


class Kind:
    """What a field holds. Leaf kinds implement `convert`; containers override `parse`
    (a leaf's path is built only when it is refused: the valid body is the common one)."""

    leaf: ClassVar[bool] = True

    def parse(self, value: object, path: Path, problems: Problems) -> Any:
        try:
            return self.convert(value)
        except Invalid as exc:
            _record(problems, path, str(exc))
            return None

    def convert(self, value: object) -> Any:  # pragma: no cover - every leaf has its own
        raise NotImplementedError

    def schema(self, ref: SchemaRef) -> dict:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Kind):
    max_length: int
    trim: bool = True  # surrounding whitespace dropped before the other checks
    blank: bool = False
    pattern: str | None = None
    pattern_message: str = ""
    rule: Callable[[str], str | None] | None = None  # a further check: its complaint or None
    _regex: re.Pattern | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_regex", re.compile(self.pattern))

    def convert(self, value: object) -> str:
        if type(value) is not str:
            raise Invalid("Must be a string.")
        if self.trim:
            value = value.strip()
        if not value and not self.blank:
            raise Invalid("May not be blank.")
        if len(value) > self.max_length:
            raise Invalid(f"At most {self.max_length} characters.")
        if "\x00" in value:  # jsonbody refuses it first; kept for bodies from elsewhere
            raise Invalid("Null characters are not allowed.")
        if self._regex is not None and self._regex.fullmatch(value) is None:
            raise Invalid(self.pattern_message)
        if self.rule is not None and (complaint := self.rule(value)) is not None:
            raise Invalid(complaint)
        return value

    def schema(self, ref: SchemaRef) -> dict:
        schema: dict = {"type": "string", "maxLength": self.max_length}
        if not self.blank:
            schema["minLength"] = 1
        if self.pattern is not None:
            schema["pattern"] = f"^{self.pattern}$"
        return schema


SLUG = r"[-a-zA-Z0-9_]+"


def slug(max_length: int) -> Text:
    return Text(max_length, pattern=SLUG, pattern_message="Only letters, digits, '-' and '_'.")


@dataclass(frozen=True)
class Integer(Kind):
    low: int | None = None
    high: int | None = None

    def convert(self, value: object) -> int:
        if type(value) is not int:
            raise Invalid("Must be an integer.")
        _check_range(value, self.low, self.high)
        return value

    def schema(self, ref: SchemaRef) -> dict:
        return _bounded({"type": "integer"}, self.low, self.high)


@dataclass(frozen=True)
class Number(Kind):
    low: float | None = None
    high: float | None = None

    def convert(self, value: object) -> float:
        if type(value) is not float and type(value) is not int:
            raise Invalid("Must be a number.")
        _check_range(value, self.low, self.high)
        return float(value)

    def schema(self, ref: SchemaRef) -> dict:
        return _bounded({"type": "number", "format": "double"}, self.low, self.high)


@dataclass(frozen=True)
class Boolean(Kind):
    def convert(self, value: object) -> bool:
        if type(value) is not bool:
            raise Invalid("Must be true or false.")
        return value

    def schema(self, ref: SchemaRef) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Money(Kind):
    """USD as a decimal string ("0.50") or a JSON number, as DRF's DecimalField took it:
    at most `digits` digits, `places` of them after the point, not below zero; the value
    is quantized to `places`."""

    digits: int = 14
    places: int = 6

    def convert(self, value: object) -> Decimal:
        if type(value) is str:
            text = value.strip()
        elif type(value) is int or type(value) is float:
            text = str(value)
        else:
            raise Invalid("Must be a decimal string or a number.")
        try:
            amount = Decimal(text) if len(text) <= 1000 else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            raise Invalid("Must be a decimal string or a number.")
        # DRF's DecimalField.validate_precision, digit for digit.
        _sign, digit_tuple, exponent = amount.as_tuple()
        exponent = cast(int, exponent)  # finite: not one of the letters 'n', 'N', 'F'
        if exponent >= 0:
            total = whole = len(digit_tuple) + exponent
            places = 0
        elif len(digit_tuple) > -exponent:
            total, places = len(digit_tuple), -exponent
            whole = total - places
        else:
            total = places = -exponent
            whole = 0
        if total > self.digits:
            raise Invalid(f"At most {self.digits} digits in total.")
        if places > self.places:
            raise Invalid(f"At most {self.places} decimal places.")
        if whole > self.digits - self.places:
            raise Invalid(f"At most {self.digits - self.places} digits before the decimal point.")
        if amount < 0:
            raise Invalid("Must be at least 0.")
        return amount.quantize(Decimal(1).scaleb(-self.places))

    def schema(self, ref: SchemaRef) -> dict:
        whole, places = self.digits - self.places, self.places
        return {
            "oneOf": [
                {
                    "type": "string",
                    "pattern": rf"^(?:\d{{1,{whole}}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$",
                },
                {"type": "number", "minimum": 0, "maximum": float(10**whole) - 10.0**-places},
            ],
            "description": f"USD: a decimal string or a number, at most {self.places} "
            "decimal places.",
        }


@dataclass(frozen=True)
class Operation(Kind):
    """An operation type, snake_case or the seed's PascalCase (`presets.operation_types`)."""

    def convert(self, value: object) -> OperationType:
        if type(value) is not str:
            raise Invalid("Must be a string.")
        operation_type = parse_operation_type(value)
        if operation_type is None:
            raise Invalid(
                f"Unknown operation type {value[:64]!r}; expected one of "
                + ", ".join(OperationType.values)
                + "."
            )
        return operation_type

    def schema(self, ref: SchemaRef) -> dict:
        return {
            "type": "string",
            "enum": list(OperationType.values),
            "description": "Other spellings of these (e.g. the seed's PascalCase) are "
            "accepted too.",
        }


@dataclass(frozen=True)
class JsonSchema(Kind):
    """A JSON Schema the answer must match (`jsonbody.schema_problem` decides)."""

    def convert(self, value: object) -> dict:
        if type(value) is not dict:
            raise Invalid("Must be a JSON Schema object.")
        problem = schema_problem(value)
        if problem is not None:
            raise Invalid(problem)
        return value

    def schema(self, ref: SchemaRef) -> dict:
        return {"type": "object", "additionalProperties": {}, "description": "A JSON Schema."}


@dataclass(frozen=True)
class ListOf(Kind):
    item: Kind
    max_items: int
    min_items: int = 1

    leaf: ClassVar[bool] = False

    def parse(self, value: object, path: Path, problems: Problems) -> Any:
        if type(value) is not list:
            _record(problems, path, "Must be a list.")
            return None
        if not self.min_items <= len(value) <= self.max_items:
            _record(problems, path, f"Must hold {self.min_items} to {self.max_items} items.")
            return None
        item = self.item
        if not item.leaf:
            return [item.parse(v, (*path, i), problems) for i, v in enumerate(value)]
        parsed = []
        for index, entry in enumerate(value):
            try:
                parsed.append(item.convert(entry))
            except Invalid as exc:
                _record(problems, (*path, index), str(exc))
        return parsed

    def schema(self, ref: SchemaRef) -> dict:
        return {
            "type": "array",
            "items": self.item.schema(ref),
            "minItems": self.min_items,
            "maxItems": self.max_items,
        }


@dataclass(frozen=True)
class Nested(Kind):
    shape: "Shape"
    leaf: ClassVar[bool] = False

    def parse(self, value: object, path: Path, problems: Problems) -> Any:
        return self.shape.parse_into(value, path, problems)

    def schema(self, ref: SchemaRef) -> dict:
        return ref(self.shape)


@dataclass(frozen=True)
class Field:
    kind: Kind
    required: bool = False
    null: bool = True  # JSON null accepted (and kept as None) for an optional field
    default: Any = MISSING  # put in the result when the field is absent
    description: str = ""


def inline(shape: "Shape") -> dict:
    """A nested shape's schema written out in place (tests, code outside OpenAPI)."""
    return shape.schema(inline)


@dataclass(frozen=True, eq=False)  # identity: drf-spectacular keys components by it
class Shape:
    """A JSON object's fields: `parse` a body or raise InvalidRequest naming every problem;
    `schema` it for OpenAPI. `rule` checks the fields together once each is valid: it
    returns (field, complaint) or None."""

    name: str
    fields: Mapping[str, Field]
    rule: Callable[[dict], tuple[str, str] | None] | None = None
    description: str = ""
    # Alternatives: exactly one must be given (absent: the first is reported missing, as a
    # required field is, whatever else is wrong). A field of them is never `required`.
    one_of: tuple[str, ...] = ()
    _required: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _defaults: tuple[tuple[str, Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        required = tuple(name for name, f in self.fields.items() if f.required)
        defaults = tuple(
            (name, f.default) for name, f in self.fields.items() if f.default is not MISSING
        )
        object.__setattr__(self, "_required", required)
        object.__setattr__(self, "_defaults", defaults)

    def parse(self, body: object) -> dict:
        problems: Problems = {}
        data = self.parse_into(body, (), problems)
        if problems:
            raise invalid(problems)
        assert data is not None  # None only with a problem recorded
        return data

    def parse_into(self, value: object, path: Path, problems: Problems) -> dict | None:
        if type(value) is not dict:
            _record(problems, path, "Must be a JSON object.")
            return None
        before = len(problems)
        data = dict(self._defaults)
        fields = self.fields
        for name, item in value.items():
            spec = fields.get(name)
            if spec is None:
                _record(problems, (*path, name), "Unknown field.")
            elif item is None:
                if spec.null and not spec.required:
                    data[name] = None
                else:
                    _record(problems, (*path, name), "May not be null.")
            elif spec.kind.leaf:
                try:
                    data[name] = spec.kind.convert(item)
                except Invalid as exc:
                    _record(problems, (*path, name), str(exc))
            else:
                data[name] = spec.kind.parse(item, (*path, name), problems)
        for name in self._required:
            if name not in value:
                _record(problems, (*path, name), "This field is required.")
        if self.one_of:
            self._one_of(value, path, problems)
        if self.rule is not None and len(problems) == before:
            complaint = self.rule(data)
            if complaint is not None:
                _record(problems, (*path, complaint[0]), complaint[1])
        return data

    def _one_of(self, value: dict, path: Path, problems: Problems) -> None:
        # A null is absent where the field takes null; where it refuses it, that problem
        # is recorded already.
        if not any(
            name in value and (value[name] is not None or not self.fields[name].null)
            for name in self.one_of
        ):
            _record(problems, (*path, self.one_of[0]), "This field is required.")
            return
        given = [name for name in self.one_of if value.get(name) is not None]
        if len(given) > 1:
            choices = ", ".join(f"`{name}`" for name in self.one_of)
            _record(problems, (*path, given[-1]), f"Give only one of {choices}.")

    def schema(self, ref: SchemaRef) -> dict:
        properties = {}
        for name, spec in self.fields.items():
            schema = spec.kind.schema(ref)
            if "$ref" in schema and (spec.null or spec.description):
                schema = {"allOf": [schema]}  # OpenAPI 3.0: siblings of a $ref are ignored
            if spec.null and not spec.required:
                schema["nullable"] = True
            if spec.default is not MISSING and spec.default is not None:
                schema["default"] = spec.default
            if spec.description:
                schema["description"] = "; ".join(
                    filter(None, (spec.description, schema.get("description")))
                )
            properties[name] = schema
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if self._required:
            schema["required"] = list(self._required)
        if self.description:
            schema["description"] = self.description
        return schema


def invalid(problems: Problems) -> errors.InvalidRequest:
    """The one 400 for a body's problems: the first in the message, all in `details`."""
    path, messages = next(iter(problems.items()))
    message = f"Invalid request: {path}: {messages[0]}"
    others = len(problems) - 1
    if others:
        message += f" ({others} more in details.fields)"
    return errors.InvalidRequest(message, details={"fields": problems})
