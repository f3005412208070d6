"""Field checks shared by every way in (library, CLI, HTTP): one message per mistake.

A cleaner takes a raw value and returns the stored form, or raises ValueError saying what is
wrong with it; :func:`clean_fields` turns that into a ValidationError naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
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


def text(max_length: int = MAX_SHORT_TEXT, *, required: bool = False) -> Cleaner:
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

    return clean


def identifier(what: str = "name") -> Cleaner:
    """Lower-case words such as task types and event types: ``swe``, ``image-gen``."""

    def clean(value: Any) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise ValueError(
                f"must be a {what} of lower-case letters, digits, '-', '_' or '.' "
                f"(1-64, starting with a letter), got {value!r}"
            )
        return value

    return clean


def choice(options: Iterable[str]) -> Cleaner:
    allowed = tuple(options)

    def clean(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return clean


def integer(minimum: int = 0, maximum: int = MAX_INT, *, optional: bool = True) -> Cleaner:
    def clean(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {_kind(value)}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
        return value

    return clean


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_kind(value)}")
    return value


def string_list(item: Cleaner, *, max_items: int = 100) -> Cleaner:
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

    return clean


def repo_name(value: Any) -> str:
    if not isinstance(value, str) or not _REPO_RE.match(value):
        raise ValueError(f"must be a GitHub repository as owner/repo, got {value!r}")
    return value


def tag(value: Any) -> str:
    value = text(100, required=True)(value)
    if any(ch.isspace() for ch in value):
        raise ValueError(f"must be one word without spaces, got {value!r}")
    return value.lstrip("#")


def timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    return parse_timestamp(value)


def json_object(value: Any) -> dict[str, Any]:
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


def clean_fields(fields: Mapping[str, Any], cleaners: Mapping[str, Cleaner], what: str) -> dict[str, Any]:
    """Clean every field or raise ValidationError for the first bad or unknown one."""
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
    return cleaned


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
