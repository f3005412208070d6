"""JSON on the hot path: answers written and stored JSON columns read, with orjson when it is
installed (the ``fast`` extra) and the standard library otherwise. Both give the same bytes:
compact, UTF-8, keys in insertion order. Requests are still parsed by the standard library
(``wire.read_json``), which refuses NaN and names the broken place."""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the fast extra is optional
    orjson = None


def dumps_stdlib(data: Any) -> bytes:
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate from the request (e.g. echoed in an error): escape it
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode()


def _empty(text: str | bytes) -> Any:
    """``[]`` or ``{}`` for those texts (most rows' repos, tags and metadata: no parser needed),
    else None."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return None


def loads_stdlib(text: str | bytes) -> Any:
    empty = _empty(text)
    return json.loads(text) if empty is None else empty


if orjson is not None:
    _orjson_dumps, _orjson_loads, _OrjsonError = orjson.dumps, orjson.loads, orjson.JSONEncodeError

    def dumps(data: Any) -> bytes:
        try:
            return _orjson_dumps(data)
        except _OrjsonError:  # a lone surrogate, a 65-bit integer, a key that is not text
            return dumps_stdlib(data)

    # orjson reads an integer beyond 64 bits as a float (precision lost); 19 digits in a row
    # may be one, so such a text goes to the standard library, which keeps it exact.
    _LONG_DIGITS, _LONG_DIGITS_BYTES = re.compile(r"\d{19}"), re.compile(rb"\d{19}")

    def loads(text: str | bytes) -> Any:
        empty = _empty(text)
        if empty is not None:
            return empty
        pattern = _LONG_DIGITS_BYTES if isinstance(text, bytes) else _LONG_DIGITS
        if pattern.search(text) is not None:
            return json.loads(text)
        return _orjson_loads(text)
else:  # pragma: no cover
    dumps, loads = dumps_stdlib, loads_stdlib
