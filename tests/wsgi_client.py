"""A small WSGI test client: calls an app directly, the way a WSGI server would."""

from __future__ import annotations

import io
import json as jsonlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

_UNSET = object()


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes
    _json: Any = field(default=_UNSET, repr=False)

    @property
    def json(self) -> Any:
        if self._json is _UNSET:
            self._json = jsonlib.loads(self.body)
        return self._json

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class WsgiClient:
    def __init__(self, app: Any) -> None:
        self.raw_app = app
        self.app = validator(app)  # wsgiref's checker: the app must keep the WSGI contract

    def request(
        self,
        method: str,
        target: str,
        *,
        json: Any = _UNSET,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        content_length: str | None = None,
        lint: bool = True,
        remote_addr: str | None = None,
    ) -> Response:
        """``lint=False`` skips wsgiref's checker, to send what a lax server might pass on;
        ``remote_addr`` is the client's address as the server sees it."""
        if json is not _UNSET:
            body = jsonlib.dumps(json).encode()
            content_type = content_type or "application/json"
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            # WSGI carries the raw path bytes as latin-1 text.
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "SCRIPT_NAME": "",
            "QUERY_STRING": query,
            "wsgi.input": io.BytesIO(body or b""),
        }
        if body is not None:
            environ["CONTENT_LENGTH"] = str(len(body))
        if content_length is not None:
            environ["CONTENT_LENGTH"] = content_length
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        if remote_addr is not None:
            environ["REMOTE_ADDR"] = remote_addr
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        setup_testing_defaults(environ)
        captured: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split()[0])
            captured["headers"] = {k.lower(): v for k, v in response_headers}
            return lambda data: None

        chunks = (self.app if lint else self.raw_app)(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return Response(captured["status"], captured["headers"], data)

    def get(self, target: str, **kw: Any) -> Response:
        return self.request("GET", target, **kw)

    def post(self, target: str, json: Any = _UNSET, **kw: Any) -> Response:
        return self.request("POST", target, json=json, **kw)

    def patch(self, target: str, json: Any = _UNSET, **kw: Any) -> Response:
        return self.request("PATCH", target, json=json, **kw)

    def delete(self, target: str, json: Any = _UNSET, **kw: Any) -> Response:
        return self.request("DELETE", target, json=json, **kw)


def assert_error(response: Response, status: int, code: str | None = None, field: str | None = None) -> dict:
    """The response is a JSON error of ``status`` (with this ``code`` and ``field`` when given)
    whose message says something; its body is returned for more checks."""
    assert response.status == status, response.body
    assert response.content_type == "application/json"
    body = response.json
    assert isinstance(body["error"], str) and body["error"]
    if code is not None:
        assert body["code"] == code
    if field is not None:
        assert body["field"] == field
    return body
