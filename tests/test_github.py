"""The GitHub App token provider against a fake GitHub API on 127.0.0.1 that checks the JWT
signature with the app's public key and the request body, as GitHub would."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

from lobstore import ConfigurationError, open_store  # noqa: E402
from lobstore import config  # noqa: E402
from lobstore.errors import TokenProviderError  # noqa: E402
from lobstore.broker.github import GitHubAppTokenProvider, load_private_key, make_jwt  # noqa: E402

from fake_github import APP_ID, INSTALL_ID, unb64  # noqa: E402

PERMISSIONS = {"contents": "write", "pull_requests": "write", "metadata": "read"}

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
    claims = json.loads(unb64(payload))
    assert claims == {"iat": 999_940, "exp": 1_000_540, "iss": APP_ID}
    assert json.loads(unb64(header))["alg"] == "RS256"


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


def test_the_cache_keeps_no_lock_or_expired_token_of_tasks_it_no_longer_serves():
    import threading

    from lobstore.broker.tokens import TokenCache
    from lobstore.models import IssuedToken

    now = [datetime(2026, 2, 1, tzinfo=timezone.utc)]
    cache = TokenCache(clock=lambda: now[0])
    for task_id in range(1000):  # a long-running lobwife serves many tasks
        with cache.minting(task_id):
            cache.put(task_id, ("k",), IssuedToken(f"ghs_{task_id}", now[0] + timedelta(hours=1)))
    assert cache.stats() == {"tokens": 1000, "minting": 0}
    now[0] += timedelta(hours=2)  # every one of them expired
    for task_id in range(1000, 1100):
        cache.put(task_id, ("k",), IssuedToken(f"ghs_{task_id}", now[0] + timedelta(hours=1)))
    assert cache.stats()["tokens"] < 1000  # dropped as new tokens arrived
    assert cache.get(1099, ("k",)).token == "ghs_1099" and cache.get(5, ("k",)) is None

    # Two requests for one task still take turns, and the lock goes once both are done.
    inside, overlaps, release = [], [], threading.Event()

    def mint():
        with cache.minting(7):
            overlaps.append(len(inside))
            inside.append(1)
            release.wait(5)
            inside.pop()

    threads = [threading.Thread(target=mint) for _ in range(2)]
    for thread in threads:
        thread.start()
    while cache.stats()["minting"] == 0:
        pass
    release.set()
    for thread in threads:
        thread.join(5)
    assert overlaps == [0, 0] and cache.stats()["minting"] == 0
