"""A fake GitHub API on 127.0.0.1: answers POST /app/installations/{id}/access_tokens and
GET /app/installations/{id} like GitHub, after checking the app's JWT signature with its
public key (the ``github`` fixture of conftest.py starts one)."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

APP_ID = "123456"
INSTALL_ID = "987"
OWNER = "minsley"  # the account the fake installation belongs to


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeGitHub:
    """Answers POST /app/installations/{id}/access_tokens and GET /app/installations/{id} like
    GitHub, after checking the JWT against the public key. ``fail`` makes the token request
    answer (status, body) instead; ``delay`` stalls. ``requests`` are the token requests,
    ``lookups`` the installation lookups."""

    def __init__(self, public_key) -> None:
        self.public_key = public_key
        self.requests: list[dict] = []
        self.lookups: list[str] = []
        self.fail: tuple[int, bytes] | None = None
        self.raw_answer: bytes | None = None
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = fake.answer(self.path, dict(self.headers), body)
                time.sleep(fake.delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):  # noqa: N802
                fake.lookups.append(self.path)
                status, body = 200, {"id": int(INSTALL_ID), "account": {"login": OWNER, "type": "User"}}
                try:
                    fake.check_jwt(self.headers.get("Authorization", "").removeprefix("Bearer "))
                except (InvalidSignature, ValueError) as exc:
                    status, body = 401, {"message": f"bad JWT: {exc}"}
                if self.path != f"/app/installations/{INSTALL_ID}":
                    status, body = 404, {"message": "Not Found"}
                answer = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        record = {"path": path, "headers": headers, "body": None, "jwt": None}
        self.requests.append(record)
        if path != f"/app/installations/{INSTALL_ID}/access_tokens":
            return 404, b'{"message": "Not Found"}'
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return 401, b'{"message": "A JSON web token could not be decoded"}'
        try:
            record["jwt"] = self.check_jwt(auth.removeprefix("Bearer "))
        except (InvalidSignature, ValueError) as exc:
            return 401, json.dumps({"message": f"bad JWT: {exc}"}).encode()
        record["body"] = json.loads(body)
        if self.fail:
            return self.fail
        if self.raw_answer is not None:
            return 201, self.raw_answer
        expires = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 201, json.dumps({"token": f"ghs_fake{len(self.requests)}", "expires_at": expires,
                                "permissions": record["body"]["permissions"]}).encode()

    def check_jwt(self, jwt: str) -> dict:
        header_b64, payload_b64, signature_b64 = jwt.split(".")
        self.public_key.verify(unb64(signature_b64), f"{header_b64}.{payload_b64}".encode(),
                               padding.PKCS1v15(), hashes.SHA256())
        header, payload = json.loads(unb64(header_b64)), json.loads(unb64(payload_b64))
        now = time.time()
        if header != {"alg": "RS256", "typ": "JWT"}:
            raise ValueError(f"header {header}")
        if payload["iss"] != APP_ID:
            raise ValueError("wrong issuer")
        if not now - 70 <= payload["iat"] <= now - 50:
            raise ValueError("iat must be about 60 s in the past")
        if not now < payload["exp"] < now + 600:
            raise ValueError("exp must be in the future and under 10 minutes away")
        return payload

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
