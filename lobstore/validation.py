"""Field checks shared by every way in (library, CLI, HTTP): one message per mistake.

A cleaner takes a raw value and returns the stored form, or raises ValueError saying what is
wrong with it; :func:`clean_fields` turns that into a ValidationError naming the field.

A :class:`Field` is a cleaner that also says what it takes as JSON Schema, what it means and
whether a write needs it. Each write of the store is described by one table of Fields
(``{"name": text(500, required=True).require().doc("..."), ...}``): the repository cleans its
``**fields`` with it, and the HTTP adapter's checks and the OpenAPI document are derived from
it, so a field is declared in one place. The factories below (text, choice, integer, ...)
return Fields; any plain function still works as a cleaner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field as dataclass_field, replace
from datetime import datetime
from typing import Any

from .clock import parse_timestamp
from .errors import ValidationError

Cleaner = Callable[[Any], Any]

MAX_SHORT_TEXT = 500
MAX_LONG_TEXT = 200_000
MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_INT = 2**31 - 1

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Field:
    """One field of a write (or a filter): ``clean`` checks a raw value and returns the stored
    form (ValueError saying what is wrong); ``schema`` is the value as JSON Schema (OpenAPI 3.0:
    ``nullable`` where null is accepted); ``required``: the write needs it; ``description``:
    what it means, for people reading the API document. Calling a Field cleans a value."""

    clean: Cleaner
    schema: Mapping[str, Any] = dataclass_field(default_factory=dict)
    description: str = ""
    required: bool = False

    def __call__(self, value: Any) -> Any:
        return self.clean(value)

    def doc(self, description: str) -> Field:
        """The same field, described."""
        return replace(self, description=description)

    def require(self) -> Field:
        """The same field, needed by the write (absent: a ValidationError naming it)."""
        return replace(self, required=True)

    def optional(self) -> Field:
        """The same field, not needed by the write."""
        return replace(self, required=False)

    def json_schema(self) -> dict[str, Any]:
        out = dict(self.schema)
        if self.description:
            out["description"] = self.description
        return out


Fields = Mapping[str, Cleaner]  # a write's table: name -> Field (or a plain cleaner)


def field(clean: Cleaner, schema: Mapping[str, Any] | None = None, description: str = "") -> Field:
    """A Field from a cleaner of one's own (a plain function) and its JSON Schema."""
    return Field(clean, dict(schema or {}), description)


def nullable(inner: Cleaner) -> Field:
    """``inner``, with null accepted (and returned as None)."""
    schema = {**schema_of(inner), "nullable": True}
    return Field(lambda value: None if value is None else inner(value), schema,
                 getattr(inner, "description", ""))


def schema_of(cleaner: Cleaner) -> dict[str, Any]:
    """The JSON Schema of a Field; a plain cleaner says nothing (any value)."""
    return cleaner.json_schema() if isinstance(cleaner, Field) else {}


def required_names(table: Fields) -> list[str]:
    return [name for name, cleaner in table.items() if getattr(cleaner, "required", False)]


def object_schema(table: Fields, **extra: Any) -> dict[str, Any]:
    """A write's table as the JSON Schema of its request body: its fields and no others, the
    required ones listed."""
    out: dict[str, Any] = {"type": "object", "additionalProperties": False}
    required = required_names(table)
    if required:
        out["required"] = required
    out["properties"] = {name: schema_of(cleaner) for name, cleaner in table.items()}
    out.update(extra)
    return out


def text(max_length: int = MAX_SHORT_TEXT, *, required: bool = False) -> Field:
    """Text of at most ``max_length`` characters; ``required``: not null and not blank (the
    field may still be left out of a write, unless its table says :meth:`Field.require`)."""
    def clean(value: Any) -> str | None:
        if value is None:
            if required:
                raise ValueError("is required")
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {_kind(value)}")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if not is_unicode(value):
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)")
        if required and not value.strip():
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"is too long ({len(value)} characters; at most {max_length})")
        return value

    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    schema.update({"minLength": 1} if required else {"nullable": True})
    return Field(clean, schema)


def identifier(what: str = "name") -> Field:
    """Lower-case words such as task types and event types: ``swe``, ``image-gen``."""

    def clean(value: Any) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise ValueError(
                f"must be a {what} of lower-case letters, digits, '-', '_' or '.' "
                f"(1-64, starting with a letter), got {value!r}"
            )
        return value

    return Field(clean, {"type": "string", "pattern": _NAME_RE.pattern})


def choice(options: Iterable[str]) -> Field:
    allowed = tuple(options)

    def clean(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return Field(clean, enum_schema(allowed))


def enum_schema(options: Iterable[str], **extra: Any) -> dict[str, Any]:
    """The JSON Schema of one of ``options`` (statuses, severities, ...): the enum is written
    where the options are, never again."""
    return {"type": "string", "enum": list(options), **extra}


def integer(minimum: int = 0, maximum: int = MAX_INT, *, optional: bool = True) -> Field:
    def clean(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {_kind(value)}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
        return value

    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if optional:
        schema["nullable"] = True
    return Field(clean, schema)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_kind(value)}")
    return value


boolean = Field(_boolean, {"type": "boolean"})


def string_list(item: Cleaner, *, max_items: int = 100) -> Field:
    def clean(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list, not {_kind(value)}")
        if len(value) > max_items:
            raise ValueError(f"has {len(value)} items; at most {max_items}")
        cleaned: list[str] = []
        for position, entry in enumerate(value):
            try:
                entry = item(entry)
            except ValueError as exc:
                raise ValueError(f"item {position} {exc}") from None
            if entry not in cleaned:  # a list of names is a set in a stable order
                cleaned.append(entry)
        return cleaned

    return Field(clean, {"type": "array", "items": schema_of(item) or {"type": "string"}, "maxItems": max_items})


def _task_ref(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() and len(value) <= 200:
        return value
    raise ValueError(f"must name a task (42, \"T42\" or a legacy id), got {value!r}")


# A task named in a body (42, "T42" or a legacy id); the store resolves it.
task_ref = Field(_task_ref, {"oneOf": [{"type": "integer"}, {"type": "string"}], "example": "T42"})


def _repo_name(value: Any) -> str:
    if not isinstance(value, str) or not _REPO_RE.match(value):
        raise ValueError(f"must be a GitHub repository as owner/repo, got {value!r}")
    return value


repo_name = Field(_repo_name, {"type": "string", "pattern": _REPO_RE.pattern, "example": "minsley/lobmob"})


def _tag(value: Any) -> str:
    value = text(100, required=True)(value)
    if any(ch.isspace() for ch in value):
        raise ValueError(f"must be one word without spaces, got {value!r}")
    return value.lstrip("#")


tag = Field(_tag, {"type": "string", "minLength": 1, "maxLength": 100, "example": "ui"})


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    return parse_timestamp(value)


TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time", "example": "2026-02-16T12:00:00Z"}
timestamp = Field(_timestamp, {**TIME_SCHEMA, "nullable": True})


def _json_object(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a JSON object, not {_kind(value)}")
    _check_json_tree(value, "", 1)  # first: it bounds the depth the encoder below recurses to
    try:
        encoded = json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"must hold only JSON values ({exc})") from None
    if len(encoded.encode()) > MAX_JSON_BYTES:
        raise ValueError(f"is too large ({len(encoded)} bytes as JSON; at most {MAX_JSON_BYTES})")
    return json.loads(encoded)


json_object = Field(_json_object, {"type": "object", "nullable": True})


def is_unicode(value: str) -> bool:
    """False for text no database can store as UTF-8: lone surrogates (e.g. JSON "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_json_tree(value: Any, where: str, depth: int) -> None:
    # PostgreSQL's jsonb refuses NUL and lone surrogates: refuse them on every backend alike.
    # Deep nesting would exhaust the recursion of the JSON encoder (a 500, not a 422).
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"is nested more than {MAX_JSON_DEPTH} levels deep at {where!r}")
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        here = f"{where}.{key}" if where else str(key)
        for text_ in (key, item):
            if isinstance(text_, str) and ("\x00" in text_ or not is_unicode(text_)):
                raise ValueError(f"holds text with a NUL character or a lone surrogate at {here!r}")
        _check_json_tree(item, here, depth + 1)


def clean_fields(fields: Mapping[str, Any], cleaners: Fields, what: str) -> dict[str, Any]:
    """Clean every field or raise ValidationError for the first unknown, missing (a Field the
    table marks required) or bad one, naming it."""
    cleaned: dict[str, Any] = {}
    for name, value in fields.items():
        cleaner = cleaners.get(name)
        if cleaner is None:
            raise ValidationError(
                f"unknown field {name!r} for {what}; known fields: {', '.join(sorted(cleaners))}",
                field=name,
            )
        try:
            cleaned[name] = cleaner(value)
        except ValueError as exc:
            raise ValidationError(f"{name} {exc}", field=name) from None
    for name in required_names(cleaners):
        if name not in fields:
            hint = getattr(cleaners[name], "description", "")
            raise ValidationError(f"{name} is required" + (f": {hint}" if hint else ""), field=name)
    return cleaned


def with_positional(fields: dict[str, Any], **given: Any) -> dict[str, Any]:
    """``fields`` with the values a caller gave positionally (``add("T1", "note")``) under
    their names; a name given both ways is a ValidationError."""
    for name, value in given.items():
        if value is None:
            continue
        if name in fields:
            raise ValidationError(f"{name} is given twice: once is enough", field=name)
        fields[name] = value
    return fields


def batch(value: Any, what: str, max_items: int, name: str = "items") -> list[Mapping[str, Any]]:
    """A list of 1 to ``max_items`` JSON objects, or ValidationError."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValidationError(f"{name} must be a list of {what}s, not {_kind(value)}", field=name)
    if not 1 <= len(value) <= max_items:
        raise ValidationError(f"{name} must hold 1 to {max_items} {what}s, got {len(value)}", field=name)
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValidationError(f"{what} {index} must be a JSON object, not {_kind(item)}",
                                  field=name, index=index)
    return list(value)


@contextmanager
def item_of_batch(index: int, what: str) -> Iterator[None]:
    """Inside a batch, a ValidationError also says which item (``index``, counting from 0)."""
    try:
        yield
    except ValidationError as exc:
        details = {key: value for key, value in exc.details.items() if key not in ("field", "index")}
        raise ValidationError(f"{what} {index}: {exc.message}", field=exc.field, index=index,
                              **details) from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
