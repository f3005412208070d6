"""HTTP on the wire: reading requests (JSON only, size limits, query strings) and writing
JSON answers, with lobstore errors mapped to status codes in one place (``ERROR_STATUS``)."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from bottle import HTTPResponse, request

from ...errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    LobstoreError,
    NotFoundError,
    SchemaVersionError,
    StorageError,
    TokenRefusedError,
    TooManyFailuresError,
    UnavailableError,
    ValidationError,
)
from ... import jsoncodec
from ...models import Task
from ...store import Transaction

log = logging.getLogger(__name__)

PREFIXES = ("/api", "/api/v1")
MAX_BODY_BYTES = 1024 * 1024  # a task description may be 200,000 characters; 1 MiB covers it
MAX_QUERY_FIELDS = 100
JSON_TYPES = ("application/json",)

_BODY_KEY = "lobstore.body"  # where the request body is kept once read


class MalformedRequestError(LobstoreError):
    """The request cannot be read at all: broken JSON, a bad Content-Length, bad encoding."""

    code = "malformed"


class UnsupportedMediaTypeError(LobstoreError):
    code = "unsupported_media_type"


class PayloadTooLargeError(LobstoreError):
    code = "too_large"


class MissingFieldError(MalformedRequestError):
    """A required field is absent where today's callers expect a 400 (the old broker's routes)."""

    code = "missing_field"


# The one place lobstore errors become status codes: the first class that matches wins.
ERROR_STATUS: tuple[tuple[type[LobstoreError], int], ...] = (
    (MalformedRequestError, 400),
    (AuthenticationError, 401),
    (TokenRefusedError, 403),
    (ForbiddenError, 403),  # a scope the credential lacks, another task, the broker policy
    (NotFoundError, 404),
    (ConflictError, 409),  # InvalidTransitionError and stale versions included
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (ValidationError, 422),
    (TooManyFailuresError, 429),
    (SchemaVersionError, 503),
    (UnavailableError, 503),  # not configured, no token provider, GitHub failing, no job runner
    (StorageError, 503),
)
# What Bottle itself raises (routing, its own failures) gets a code of the same family.
ROUTING_CODES = {404: "no_route", 405: "method_not_allowed", 500: "internal"}
# Errors whose text may hold what a client must not see (a driver's message names tables,
# constraints, file paths, host names): the client gets an error id, the log the details.
PRIVATE_ERRORS: tuple[type[LobstoreError], ...] = (StorageError,)


def status_for(error: LobstoreError) -> int:
    for kind, status in ERROR_STATUS:
        if isinstance(error, kind):
            return status
    return 500


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HTTPResponse:
    return encoded_json_response(jsoncodec.dumps(data), status, headers)


def encoded_json_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> HTTPResponse:
    """:func:`json_response` for a body already encoded (the hot routes' JSON made by the store)."""
    return HTTPResponse(body, status, {"Content-Type": "application/json", **(headers or {})})


def error_response(error: LobstoreError) -> HTTPResponse:
    status = status_for(error)
    if status >= 500 and (isinstance(error, PRIVATE_ERRORS) or status == 500):
        return json_response(private_error(error, status), status)
    return json_response(error.to_dict(), status)


def private_error(error: BaseException | str, status: int) -> dict[str, Any]:
    """The answer to a failure whose details stay in the server log: a generic message and
    the error id that finds them there."""
    error_id = new_error_id()
    log.error("error %s on %s %s: %s", error_id, request.method, request.path,
              error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    what = "the database failed" if isinstance(error, StorageError) else "internal error"
    code = error.code if isinstance(error, LobstoreError) else ROUTING_CODES.get(status, "internal")
    return {"error": f"{what}: the server log has the details under error id {error_id}",
            "code": code, "error_id": error_id}


def new_error_id() -> str:
    return secrets.token_hex(6)


def etag(task: Task) -> str:
    return version_etag(task.version)


def version_etag(version: int) -> str:
    return f'"v{version}"'


# -- reading requests -------------------------------------------------------------------------


def read_json(max_body: int, *, required: bool = True, batch: bool = False) -> Any:
    """The request body as a JSON object. Refuses what is not JSON (415), too large (413),
    unreadable (400) or not an object (422)."""
    raw = request_body(max_body)
    content_type = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if not raw and not content_type and not required:
        return {}
    if content_type not in JSON_TYPES:
        shown = content_type or "no Content-Type"
        raise UnsupportedMediaTypeError(f"send JSON with Content-Type: application/json, not {shown}")
    if not raw:
        if not required:
            return {}
        raise MalformedRequestError("the request body is empty: send a JSON object")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedRequestError(f"the body is not valid JSON: {_short(exc)}") from None
    if isinstance(data, list) and batch:  # a batch: the library checks its items
        return data
    if not isinstance(data, dict):
        wanted = "a JSON object or an array of them" if batch else "a JSON object"
        raise ValidationError(f"the body must be {wanted}, not {type(data).__name__}", field="body")
    return data


def request_body(max_body: int) -> bytes:
    """The request body, read once (the idempotency check and the handler both need it)."""
    environ = request.environ
    if _BODY_KEY not in environ:
        environ[_BODY_KEY] = read_body(environ, max_body)
    return environ[_BODY_KEY]


def read_body(environ: Mapping[str, Any], max_body: int) -> bytes:
    length_header = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length_header:
        if not length_header.isascii() or not length_header.isdigit():
            raise MalformedRequestError(f"Content-Length must be a number of bytes, got {length_header!r}")
        length = int(length_header)
        if length > max_body:
            raise PayloadTooLargeError(f"the body is {length} bytes; at most {max_body}", limit=max_body)
        data = stream.read(length) if length else b""
        if len(data) < length:
            raise MalformedRequestError(f"the body ended after {len(data)} of {length} bytes")
        return data
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        data = stream.read(max_body + 1)  # the server has already removed the chunk framing
        if len(data) > max_body:
            raise PayloadTooLargeError(f"the body is over {max_body} bytes", limit=max_body)
        return data
    return b""


def read_query(allowed: Iterable[str]) -> dict[str, list[str]]:
    """The query string as name -> values; an unknown name is a 422 naming it."""
    known = tuple(allowed)
    try:
        text = request.environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:  # bad UTF-8, too many fields
        raise MalformedRequestError(f"the query string cannot be read: {_short(exc)}") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in known:
            hint = f"known: {', '.join(known)}" if known else "this route takes none"
            raise ValidationError(f"unknown query parameter {name!r}; {hint}", field=name)
        params.setdefault(name, []).append(value)
    return params


def single(params: Mapping[str, list[str]], name: str) -> str:
    values = params[name]
    if len(values) > 1:
        raise ValidationError(f"{name} may be given once, got {len(values)} values", field=name)
    return values[0]


def whole_number(value: str, name: str) -> int:
    # Range checks are the library's; this is only the step from query text to a number.
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise ValidationError(f"{name} must be a whole number, got {value[:40]!r}", field=name)
    return int(value)


def flag(value: str, name: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValidationError(f"{name} must be true or false, got {value[:40]!r}", field=name)


def path_id(value: str, what: str) -> int:
    """A numeric id from the path; anything else names nothing there is (404)."""
    if not value.isascii() or not value.isdigit() or len(value) > 18 or int(value) < 1:
        raise NotFoundError(f"no {what} {value[:40]!r}: ids are whole numbers from 1")
    return int(value)


def paging(params: Mapping[str, list[str]], default: int) -> tuple[int | None, int]:
    """``after`` (None: from the start) and ``limit`` (``default`` when not given) as numbers."""
    after = whole_number(single(params, "after"), "after") if "after" in params else None
    limit = whole_number(single(params, "limit"), "limit") if "limit" in params else default
    return after, limit


def next_page(params: Mapping[str, list[str]], items: list[Any], limit: int) -> dict[str, str]:
    """A ``Link`` to the next page when this one is full (keyset paging: after the last id).
    ``items`` are objects with an ``id``, or the ids themselves."""
    if len(items) < limit or not items:
        return {}
    following = [(k, v) for k, values in params.items() if k != "after" for v in values]
    last = items[-1]
    following.append(("after", str(last if isinstance(last, int) else last.id)))
    return {"Link": f'<{request.script_name.rstrip("/")}{request.path}?{urlencode(following)}>; rel="next"'}


def renamed(filters: dict[str, Any]) -> dict[str, Any]:
    """Cost filters as the library names them: JSON's ``task_id`` is its ``task``."""
    if "task_id" in filters:
        filters["task"] = filters.pop("task_id")
    return filters


def only(fields: dict[str, Any], allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Refuse fields a library call does not take, naming the first one."""
    for name in fields:
        if name not in allowed:
            known = f"known fields: {', '.join(allowed)}" if allowed else "it takes none"
            raise ValidationError(f"unknown field {name!r} for {what}; {known}", field=name)
    return fields


_ETAG_RE = re.compile(r'^"v([0-9]{1,18})"$')


def if_match_version(ref: str, db: Transaction) -> int | None:
    """The version an ``If-Match: "v3"`` header expects; None when there is no header.

    ``*`` matches any existing task. An ETag this API never issued cannot match: a 409.
    """
    header = request.environ.get("HTTP_IF_MATCH")
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if tags == ["*"]:
        db.tasks.get(ref)  # 404 if there is no such task
        return None
    versions = {int(m.group(1)) for m in map(_ETAG_RE.match, tags) if m}
    if len(versions) == 1:
        (version,) = versions
        if version >= 1:
            return version
    if len(versions) > 1:
        raise ValidationError("If-Match may name one version of the task", field="If-Match")
    current = db.tasks.get(ref)
    raise ConflictError(
        f"If-Match {header[:80]!r} does not match {current.ref} (its ETag is {etag(current)})",
        task_id=current.ref, version=current.version,
    )


def current_prefix() -> str:
    return prefix_of(request.path) or PREFIXES[0]


def prefix_of(path: str) -> str | None:
    return next((p for p in sorted(PREFIXES, key=len, reverse=True) if path.startswith(p + "/")), None)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__
