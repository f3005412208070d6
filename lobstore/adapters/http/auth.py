"""Authentication and scopes for every route: a Bottle plugin over the access table.

With authentication required, each request names its credential in ``Authorization: Bearer
<secret>``; the plugin looks it up (a hash, one indexed read), finds the route's rule in
:data:`~lobstore.adapters.http.scopes.ROUTE_ACCESS` and lets the request through, or answers
401 (no credential, or an unknown, revoked or expired one), 403 (a scope it lacks, another
task's data) or 429 (too many bad credentials from that address). The principal is left in
the request for the handlers (:func:`current_principal`): the broker records who asked, and
/health shows more to whom may see more.

With authentication off, every request is let through as :data:`OPEN`, which holds every
scope: the API as it was before credentials, for clusters whose clients send none.
"""

from __future__ import annotations

import base64

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bottle import HTTPResponse, request

from ...credentials import SCOPES, effective_scopes
from ...errors import AuthenticationError, ForbiddenError, LobstoreError, NotFoundError, TooManyFailuresError
from ...ids import parse_ref
from ...store import Store
from .scopes import PUBLIC, Access, access_for
from .throttle import FailureThrottle
from .wire import error_response, read_json

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "lobstore.principal"
BEARER = "bearer"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a credential's name and effective scopes (implied ones included); for a
    task credential, its task. ``credential_id`` is None when no credential was checked."""

    name: str | None
    scopes: frozenset[str]
    credential_id: int | None = None
    task_id: int | None = None
    task_ref: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.credential_id is not None

    def allows(self, scope: str) -> bool:
        return scope == PUBLIC or scope in self.scopes


OPEN = Principal(None, frozenset(SCOPES))  # authentication off: what every request may do
ANONYMOUS = Principal(None, frozenset())  # authentication required, no credential sent


def current_principal() -> Principal:
    """The caller of the request being handled (set by :class:`Authenticator`)."""
    return request.environ.get(PRINCIPAL_KEY, ANONYMOUS)


@dataclass
class AuthSettings:
    """How ``make_app`` authenticates. ``required=False`` is the open API of old."""

    required: bool = True
    throttle: FailureThrottle = field(default_factory=FailureThrottle)


class Authenticator:
    """The Bottle plugin (installed by ``make_app`` on every route, later ones included)."""

    name = "lobstore-auth"
    api = 2

    def __init__(self, store: Store, settings: AuthSettings | None, *, max_body: int) -> None:
        self.store = store
        self.settings = settings
        self.max_body = max_body

    @property
    def required(self) -> bool:
        return self.settings is not None and self.settings.required

    def apply(self, callback: Callable[..., Any], route: Any) -> Callable[..., Any]:
        access = access_for(route.method, route.rule)
        if access is None:
            log.error("%s %s has no access rule in adapters/http/scopes.py: refused to everyone while "
                      "authentication is required", route.method, route.rule)

        def authenticated(**params: Any) -> Any:
            try:
                principal = self.admit(access, route.rule, params)
            except LobstoreError as exc:
                return _refusal(exc)
            request.environ[PRINCIPAL_KEY] = principal
            return callback(**params)

        authenticated.__name__ = getattr(callback, "__name__", "route")
        return authenticated

    # -- the decision -------------------------------------------------------------------------
    def admit(self, access: Access | None, rule: str, params: dict[str, Any]) -> Principal:
        if not self.required:
            return OPEN
        principal = self._principal()
        if access is None:
            raise ForbiddenError(
                f"{request.method} {rule} has no access rule: the server refuses it until one is "
                f"added to lobstore/adapters/http/scopes.py"
            )
        if access.scope == PUBLIC:
            return principal
        if not principal.authenticated:
            raise AuthenticationError(
                f"{request.method} {request.path} needs a credential with the {access.scope} scope: "
                f"send Authorization: Bearer <secret>", reason="missing", scope=access.scope,
            )
        if principal.task_id is not None:
            self._check_own_task(principal, access)
        elif not principal.allows(access.scope):
            held = ", ".join(s for s in SCOPES if s in principal.scopes) or "none"
            raise ForbiddenError(
                f"{request.method} {request.path} needs the {access.scope} scope; credential "
                f"{principal.name!r} has {held}", scope=access.scope,
            )
        return principal

    def _principal(self) -> Principal:
        header = request.environ.get("HTTP_AUTHORIZATION")
        if header is None:
            return ANONYMOUS
        scheme, _, secret = header.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() == "basic" and _dashboard_page():  # a browser: any user name, the secret as password
            secret = _basic_password(secret)
        elif scheme.lower() != BEARER:
            secret = ""
        if not secret:
            raise AuthenticationError("send the credential as Authorization: Bearer <secret>", reason="malformed")
        address = request.environ.get("REMOTE_ADDR") or "-"
        throttle = self.settings.throttle if self.settings is not None else None
        if throttle is not None:
            throttle.check(address)
        try:
            credential = self.store.credentials.authenticate(secret)
        except AuthenticationError as exc:
            if throttle is not None:
                throttle.failed(address, str(exc.details.get("name", "unknown credential")), exc.reason)
            raise
        if throttle is not None:
            throttle.succeeded(address)
        return Principal(
            credential.name, effective_scopes(credential.scopes), credential.id,
            credential.task_id, credential.task_ref,
        )

    # -- task credentials ---------------------------------------------------------------------
    def _check_own_task(self, principal: Principal, access: Access) -> None:
        """A task credential may use a route marked for it, on its own task only."""
        if access.task is None:
            raise ForbiddenError(
                f"{principal.name!r} is a task credential: it acts on {principal.task_ref} only, and "
                f"{request.method} {request.path} needs the {access.scope} scope", scope=access.scope,
            )
        if access.task == "ref":
            named: Iterable[object] = [self._path_ref()]
        else:
            named = self._body_refs(access.task)
        for ref in named:
            if ref is None or self._task_id(ref) != principal.task_id:
                shown = "no task" if ref is None else repr(str(ref))
                raise ForbiddenError(
                    f"{principal.name!r} acts on {principal.task_ref} only; this request names {shown}",
                    task_id=principal.task_ref,
                )
        if access.task_fields is not None:
            body = read_json(self.max_body)
            extra = sorted(set(body) - access.task_fields)
            if extra:
                raise ForbiddenError(
                    f"a task credential may change only {', '.join(sorted(access.task_fields))} of its task, "
                    f"not {', '.join(extra)}", field=extra[0],
                )

    def _path_ref(self) -> object:
        return request.url_args.get("ref")

    def _body_refs(self, name: str) -> list[object]:
        body = read_json(self.max_body, batch=True)
        items = body if isinstance(body, list) else [body]
        return [item.get(name) if isinstance(item, dict) else None for item in items] or [None]

    def _task_id(self, ref: object) -> int | None:
        """The task ``ref`` names: its ref or legacy id, else (as a token request names it) the
        slug, name or assignee of a registered task. Where a route's handler knows only refs
        and legacy ids, a name found the other way reaches no task there (404), so the wider
        lookup never lets a request through to another task."""
        try:
            parsed = parse_ref(ref, self.store.id_prefix)
            if parsed.id is not None:
                return parsed.id
        except NotFoundError:
            return None
        return self.store.broker.task_named(ref)


def _dashboard_page() -> bool:
    """The web dashboard (a browser asks for its secret once, as HTTP Basic), not the API,
    and the live feed its pages follow (EventSource sends the browser's Basic credentials)."""
    path = request.path
    return path == "/" or path.startswith("/ui/") or path == "/ui" or path == "/api/v1/events/stream"


def _basic_password(encoded: str) -> str:
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ""


def _refusal(error: LobstoreError) -> HTTPResponse:
    response = error_response(error)
    if isinstance(error, AuthenticationError):
        # The dashboard's pages ask a browser for the secret (as the password); the API for a bearer.
        response.set_header("WWW-Authenticate",
                            'Basic realm="lobstore dashboard"' if _dashboard_page() else 'Bearer realm="lobstore"')
    elif isinstance(error, TooManyFailuresError):
        response.set_header("Retry-After", str(error.retry_after))
    return response
