"""The GitHub App token provider against a fake GitHub API on 127.0.0.1 that checks the JWT
signature with the app's public key and the request body, as GitHub would."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("cryptography")

from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402

from lobstore import ConfigurationError, open_store  # noqa: E402
from lobstore import config  # noqa: E402
from lobstore.errors import TokenProviderError  # noqa: E402
from lobstore.broker.github import GitHubAppTokenProvider, load_private_key, make_jwt  # noqa: E402

APP_ID = "123456"
INSTALL_ID = "987"
OWNER = "minsley"  # the account the fake installation belongs to
PERMISSIONS = {"contents": "write", "pull_requests": "write", "metadata": "read"}


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


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
        self.public_key.verify(_unb64(signature_b64), f"{header_b64}.{payload_b64}".encode(),
                               padding.PKCS1v15(), hashes.SHA256())
        header, payload = json.loads(_unb64(header_b64)), json.loads(_unb64(payload_b64))
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


@pytest.fixture
def github(key):
    fake = FakeGitHub(key.public_key())
    yield fake
    fake.close()


@pytest.fixture
def provider(github, key):
    return GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=2)


def test_token_for_the_tasks_repo_names_with_the_lobster_permissions(github, provider):
    token = provider.issue(["minsley/lobmob", "minsley/unity"])
    assert token.token == "ghs_fake1"
    assert token.expires_at > datetime.now(timezone.utc) + timedelta(minutes=55)
    (request,) = github.requests
    assert request["jwt"]["iss"] == APP_ID  # signature verified with the public key
    assert request["body"] == {"repositories": ["lobmob", "unity"], "permissions": PERMISSIONS}
    assert request["headers"]["Accept"] == "application/vnd.github+json"
    assert "ghs_fake1" not in repr(token) and "PRIVATE" not in repr(provider)


def test_jwt_signed_with_another_key_is_rejected_by_the_fake(github):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider = GitHubAppTokenProvider(APP_ID, INSTALL_ID, other, api_base=github.url)
    with pytest.raises(TokenProviderError) as exc:
        provider.issue(["minsley/lobmob"])
    assert exc.value.upstream_status == 401 and "bad JWT" in exc.value.reason


def test_make_jwt_claims(key):
    header, payload, _ = make_jwt(APP_ID, key, now=1_000_000).split(".")
    claims = json.loads(_unb64(payload))
    assert claims == {"iat": 999_940, "exp": 1_000_540, "iss": APP_ID}
    assert json.loads(_unb64(header))["alg"] == "RS256"


@pytest.mark.parametrize("status, body, reason", [
    (401, b'{"message": "Bad credentials"}', "Bad credentials"),
    (422, b'{"message": "There is at least one repository that does not exist"}', "does not exist"),
    (500, b"<html>oops</html>", "<html>oops</html>"),
])
def test_github_errors_carry_status_and_reason(github, provider, status, body, reason):
    github.fail = (status, body)
    with pytest.raises(TokenProviderError) as exc:
        provider.issue(["minsley/lobmob"])
    error = exc.value.to_dict()
    assert error["code"] == "token_provider_failed" and error["upstream_status"] == status
    assert reason in error["reason"] and str(status) in error["error"]


def test_answer_without_a_token_is_an_error(github, provider):
    github.raw_answer = b'{"expires_at": "2026-02-16T11:00:00Z"}'
    with pytest.raises(TokenProviderError, match="without a usable token") as exc:
        provider.issue(["minsley/lobmob"])
    assert exc.value.upstream_status == 201


def test_unreachable_github(key):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(TokenProviderError, match="could not be reached") as exc:
        provider.issue(["minsley/lobmob"])
    assert exc.value.upstream_status is None


def test_slow_github_times_out(github, key):
    github.delay = 1.0
    provider = GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=0.2)
    with pytest.raises(TokenProviderError, match="could not be reached"):
        provider.issue(["minsley/lobmob"])


# -- the key and the configuration -------------------------------------------------------------
def test_key_from_pem_base64_pem_or_path(pem, tmp_path, key):
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    expected = key.public_key().public_numbers()
    for loaded in (load_private_key(pem=pem.decode()), load_private_key(pem=base64.b64encode(pem)),
                   load_private_key(path=path)):
        assert loaded.public_key().public_numbers() == expected


def test_bad_keys_are_configuration_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="not a usable PEM key"):
        load_private_key(pem=base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_private_key(path=tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="one of them"):
        load_private_key()
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ConfigurationError, match="RSA"):
        load_private_key(pem=ec_pem)


def test_config_builds_the_provider_from_lobwifes_variables(pem, github):
    assert config.token_provider({}) is None
    with pytest.raises(ConfigurationError, match="GH_APP_INSTALL_ID"):
        config.token_provider({"GH_APP_ID": APP_ID})
    with pytest.raises(ConfigurationError, match="GH_APP_PEM"):
        config.token_provider({"GH_APP_ID": APP_ID, "GH_APP_INSTALL_ID": INSTALL_ID})
    provider = config.token_provider({"GH_APP_ID": APP_ID, "GH_APP_INSTALL_ID": INSTALL_ID,
                                      "GH_APP_PEM": base64.b64encode(pem).decode(),
                                      "LOBSTORE_GITHUB_API": github.url})
    assert provider.url == f"{github.url}/app/installations/{INSTALL_ID}/access_tokens"
    assert config.token_provider({"GH_APP_ID": " ", "GH_APP_PEM": "x"}) is None


def test_broker_ttl_setting():
    assert config.broker_ttl(None, {}) == timedelta(hours=24)
    assert config.broker_ttl(None, {"LOBSTORE_BROKER_TTL": "3600"}) == timedelta(hours=1)
    assert config.broker_ttl(60, {"LOBSTORE_BROKER_TTL": "3600"}) == timedelta(minutes=1)
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ConfigurationError, match="LOBSTORE_BROKER_TTL"):
            config.broker_ttl(None, {"LOBSTORE_BROKER_TTL": bad})


def test_store_issues_reuses_and_refreshes_github_tokens(github, provider):
    with open_store("sqlite://") as store:
        store.set_token_provider(provider)
        store.tasks.create(name="x")
        store.broker.register("T1", repos=["minsley/lobmob"], lobster_type="swe")
        first = store.broker.issue_token("T1")
        assert store.broker.issue_token("T1") == first and len(github.requests) == 1
        store.broker.register("T1", repos=["minsley/lobmob", "minsley/unity"])  # renewed: new token
        second = store.broker.issue_token("T1")
        assert second.token != first.token and len(github.requests) == 2
        assert github.requests[1]["body"]["repositories"] == ["lobmob", "unity"]
        github.fail = (403, b'{"message": "Resource not accessible by integration"}')
        store.broker.deregister("T1")
        store.broker.register("T1", repos=["minsley/lobmob"])
        with pytest.raises(TokenProviderError) as exc:
            store.broker.issue_token("T1")
        assert exc.value.upstream_status == 403
        assert store.tasks.get("T1").token_count == 3  # two minted, one reused; the failure counted nothing


def test_cache_reuses_until_five_minutes_before_expiry():
    from lobstore.models import IssuedToken
    from lobstore.broker.tokens import TokenCache

    now = datetime.now(timezone.utc)
    cache = TokenCache()
    token = IssuedToken("ghs_x", now + timedelta(hours=1))
    cache.put(1, ("k",), token)
    assert cache.get(1, ("k",), now) is token
    assert cache.get(1, ("other registration",), now) is None
    assert cache.get(1, ("k",), now + timedelta(minutes=54)) is token
    assert cache.get(1, ("k",), now + timedelta(minutes=55)) is None  # refresh from here on
    assert cache.get(1, ("k",), now) is None  # and the stale entry is gone
