"""The one parser of JSON request bodies, for DRF and the fast front alike, and the one
check of a JSON Schema a client sends (`schema_problem`).

What it returns can be validated, stored and sent on without surprises: objects and
arrays nested at most AURA["MAX_JSON_DEPTH"] levels (deeper, jsonschema and Python's
own json recurse past the interpreter's limit), and no string, key or value, holding
U+0000 (PostgreSQL cannot store it in text or JSONB) or a lone surrogate (no UTF-8
encoder, hence no database, provider or response, can carry it). Anything else is an
`InvalidRequest` naming the field, e.g. `messages[0].content`.
"""

import json
import re
from collections.abc import Iterable
from typing import Any

import jsonschema
import orjson
import referencing.exceptions
from django.conf import settings
from referencing import Registry
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding

from aura_orchestrator import errors
from aura_orchestrator.api.exceptions import invalid_field

Path = tuple[str | int, ...]

_SURROGATE = re.compile("[\ud800-\udfff]")
# Strings and brackets of a JSON text (used only to find where a body orjson refused as
# too deep goes too deep): a string first, so brackets inside strings are skipped.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_CLOSER = {ord("["): b"]", ord("{"): b"}"}
_LOCATE_TOKENS = 200_000  # a bound on the work spent naming the field of a refused body
_PATH_CHARS = 200
_DEEP_PATH_STEPS = 8  # of a path too deep: where it starts is what the client can act on


def max_depth() -> int:
    return settings.AURA["MAX_JSON_DEPTH"]


def parse_json_body(raw: bytes | str) -> object:
    """The JSON value of a request body, or InvalidRequest. Costs orjson's parse plus
    three scans of the bytes for the usual body (few brackets, no `\\u0000` escape);
    only other bodies are walked."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refusal(raw, exc) from None
    limit = max_depth()
    # A JSON text nests no deeper than its count of opening brackets, and a NUL can only
    # be written as the escape \u0000 (orjson refuses raw control characters): the walk
    # is needed only when one of these cheap scans cannot rule a problem out.
    if isinstance(raw, bytes):  # else a str (the two types it is given)
        nul = b"\\u0000" in raw
        openers = raw.count(b"[") + raw.count(b"{")
    else:
        nul = "\\u0000" in raw
        openers = raw.count("[") + raw.count("{")
    if nul or (openers > limit and _deeper_than(data, limit)):
        _walk(data, limit=limit, nul=nul, surrogates=False)
    return data


# Documents of every JSON type (and one level of each container) a schema is tried on.
_SAMPLES: tuple[object, ...] = (None, False, 0, 0.5, "", [None], {})
_REFERENCES = frozenset(("$ref", "$dynamicRef", "$recursiveRef"))


def schema_problem(schema: dict) -> str | None:
    """Why `schema` cannot check an answer, or None: it must be valid for its draft, refer
    only to itself (jsonschema fetches any other `$ref` URL, from the worker), and applying
    it must end: tried on sample documents, so `{"$ref": "#"}` is refused here, before any
    charge; a cycle only some answers reach is the pipeline's to survive."""
    remote = _remote_reference(schema)
    if remote is not None:
        return (
            f"Not a usable JSON Schema: `$ref` {remote[:200]!r} points outside the schema; "
            "only local references (`#…`) are followed."
        )
    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
        checker = validator(schema, registry=Registry())
        for document in _SAMPLES:
            for _ in checker.iter_errors(document):
                pass
    except jsonschema.exceptions.SchemaError as exc:
        return f"Not a valid JSON Schema: {exc.message}"
    except RecursionError:
        return "Not a usable JSON Schema: applying it never ends (a `$ref` cycle)."
    except referencing.exceptions.Unresolvable as exc:
        ref = str(getattr(exc, "ref", ""))[:200]
        return (
            f"Not a usable JSON Schema: `$ref` {ref!r} is not in the schema "
            "(remote references are not fetched)."
        )
    return None


def _remote_reference(schema: dict) -> str | None:
    stack: list[dict[Any, object] | list[object]] = [schema]
    while stack:
        value = stack.pop()
        items = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            if key in _REFERENCES and type(item) is str and not item.startswith("#"):
                return item
            if type(item) is dict or type(item) is list:
                stack.append(item)
    return None


class JsonBodyParser(JSONParser):
    """DRF's JSON parser (still a JSONParser, so DRF keeps reading the body through
    `request.body` and its size limit) with `parse_json_body`'s rules."""

    # Any JSON value, as DRF's JSONParser returns (its stub says a dict).
    def parse(self, stream, media_type=None, parser_context=None) -> object:  # type: ignore[override]
        encoding = get_encoding(parser_context or {})
        raw = stream.read()
        if encoding.lower().replace("-", "").replace("_", "") != "utf8":
            try:
                raw = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(f"JSON parse error - not valid {encoding}: {exc}") from None
        return parse_json_body(raw)


# --- Refusals --------------------------------------------------------------------------------


def _deeper_than(data: object, limit: int) -> bool:
    """Whether containers nest deeper than `limit`: level by level, paths untracked
    (about 10 µs for a chat of 30 messages); `_walk` then finds where."""
    level = [data] if type(data) is dict or type(data) is list else []
    for _ in range(limit):
        below = []
        for container in level:
            for item in container.values() if type(container) is dict else container:
                if type(item) is dict or type(item) is list:
                    below.append(item)
        if not below:
            return False
        level = below
    return True


def _walk(data: object, *, limit: int, nul: bool, surrogates: bool) -> None:
    """Raise for the first container deeper than `limit` or bad string found (keys
    included); iterative, so a deep value cannot exhaust the stack here."""
    stack: list[tuple[object, int, Path]] = [(data, 1, ())]
    texts = nul or surrogates
    if texts and type(data) is str:
        _check_text(data, (), nul=nul, surrogates=surrogates)
    while stack:
        value, depth, path = stack.pop()
        items: Iterable[tuple[Any, object]]
        if type(value) is dict:
            items = value.items()
        elif type(value) is list:
            items = enumerate(value)
        else:
            continue
        if depth > limit:
            raise _too_deep(path, limit)
        for key, item in items:
            if texts and type(key) is str:
                _check_text(key, (*path, key), nul=nul, surrogates=surrogates)
            if type(item) is str:
                if texts:
                    _check_text(item, (*path, key), nul=nul, surrogates=surrogates)
            elif type(item) is dict or type(item) is list:
                stack.append((item, depth + 1, (*path, key)))


def _check_text(text: str, path: Path, *, nul: bool, surrogates: bool) -> None:
    if nul and "\x00" in text:
        raise invalid_field(
            field_path(path),
            f"`{field_path(path)}` contains a NUL character (U+0000), which cannot be stored.",
        )
    if surrogates and not text.isascii() and _SURROGATE.search(text):
        raise invalid_field(
            field_path(path),
            f"`{field_path(path)}` contains a lone UTF-16 surrogate (U+D800 to U+DFFF), "
            "which is not a character.",
        )


def _too_deep(path: Path, limit: int) -> errors.InvalidRequest:
    field = field_path(path[:_DEEP_PATH_STEPS])
    if len(path) > _DEEP_PATH_STEPS:
        field += "…"
    where = "The request body" if field == "body" else f"`{field}`"
    return invalid_field(
        field, f"{where} is nested too deeply: at most {limit} levels of objects and arrays."
    )


def _refusal(raw: bytes | str, exc: orjson.JSONDecodeError) -> errors.InvalidRequest:
    """Why orjson refused the body, with the field when it can be told: orjson refuses
    lone surrogates and bodies deeper than its own limit (1024) outright, so the body
    is read again by Python's json (which takes both) to find where."""
    limit = max_depth()
    try:
        text = raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except RecursionError:
        return _too_deep(_deep_path(raw, limit), limit)
    except ValueError:  # not JSON at all (or not UTF-8): orjson's message says where
        data = None
    else:
        try:
            _walk(data, limit=limit, nul=True, surrogates=True)
        except errors.InvalidRequest as refusal:
            return refusal
    return errors.InvalidRequest(f"Malformed request body: JSON parse error - {exc}")


def _deep_path(raw: bytes | str, limit: int) -> Path:
    """The path of the first value nested deeper than `limit` in a body too deep for
    any parser: the body up to that value, with the value replaced by null and the open
    containers closed, parses, and its last entry at every level leads there."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    opened: list[int] = []
    for count, token in enumerate(_TOKEN.finditer(raw)):
        if count == _LOCATE_TOKENS:
            break
        first = raw[token.start()]
        if first in _CLOSER:
            if len(opened) == limit:
                closers = b"".join(_CLOSER[c] for c in reversed(opened))
                return _last_path(raw[: token.start()] + b"null" + closers)
            opened.append(first)
        elif first != ord('"') and opened:
            opened.pop()
    return ()


def _last_path(text: bytes) -> Path:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    path: list[str | int] = []
    while (type(value) is dict or type(value) is list) and value:
        key = next(reversed(value)) if type(value) is dict else len(value) - 1
        path.append(key)
        value = value[key]
    return tuple(path)


def field_path(path: Path) -> str:
    """`messages[0].content`; `body` for the body itself. Keys are shown as sent but
    with NUL and surrogates escaped, and the whole is cut short: it goes into a JSON
    response."""
    if not path:
        return "body"
    parts: list[str] = []
    for key in path:
        if type(key) is str:
            text = key.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")
            parts.append(f".{text[:64]}" if parts else text[:64])
        else:  # an int: a list's index
            parts.append(f"[{key}]")
    field = "".join(parts)
    return field if len(field) <= _PATH_CHARS else field[: _PATH_CHARS - 1] + "…"
