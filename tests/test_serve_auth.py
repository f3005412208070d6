"""`lobstore serve --auth`: credentials required wherever the network can reach the server,
the open API of old only on loopback or when someone says so."""

from __future__ import annotations

import subprocess

import pytest

from lobstore import config
from lobstore.errors import ConfigurationError

from lobstore_server import LOBSTORE


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_serves_the_open_api_unless_told_otherwise(host):
    assert config.auth_mode(None, host, {}) == ("off", False)
    assert config.auth_mode(None, host, {"LOBSTORE_AUTH": "required"}) == ("required", True)
    assert config.auth_mode("required", host, {"LOBSTORE_AUTH": "off"}) == ("required", True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "lobwife.lobmob.svc.cluster.local", ""])
def test_any_reachable_address_requires_credentials_unless_off_is_said(host):
    assert config.auth_mode(None, host, {}) == ("required", False)
    assert config.auth_mode(None, host, {"LOBSTORE_AUTH": "off"}) == ("off", True)
    assert config.auth_mode("off", host, {}) == ("off", True)


def test_a_bad_mode_is_refused():
    with pytest.raises(ConfigurationError, match="required or off, got 'maybe'"):
        config.auth_mode(None, "0.0.0.0", {"LOBSTORE_AUTH": "maybe"})


def test_settings_that_would_serve_a_reachable_address_open_by_default_are_refused():
    from lobstore.adapters.server import ServeSettings, serve

    settings = ServeSettings(host="0.0.0.0", port=0, db_url="sqlite://", vault=None, auth="off")
    with pytest.raises(ConfigurationError, match="say --auth off"):
        serve(settings)


def test_serve_with_auth_required_refuses_the_unknown_and_admits_a_credential(db_url, servers):
    server = servers(db_url, "--auth", "required")
    assert any("no credentials exist yet" in line for line in server.lines)
    status, headers, body = server.request("GET", "/api/v1/tasks")
    headers = {name.lower(): value for name, value in headers.items()}
    assert status == 401 and body["code"] == "unauthenticated" and headers["www-authenticate"].startswith("Bearer")
    status, _, health = server.request("GET", "/health")
    assert status == 200 and health == {"status": "ok", "version": health["version"], "db": {"ok": True}}
    made = subprocess.run([str(LOBSTORE), "--db", db_url, "credentials", "create", "lobboss",
                           "--scope", "write"], capture_output=True, text=True, check=True)
    secret = made.stdout.strip()
    auth = {"Authorization": f"Bearer {secret}"}
    status, _, task = server.request("POST", "/api/v1/tasks", {"name": "a"}, headers=auth)
    assert status == 201 and task["task_id"] == "T1"
    status, _, body = server.request("POST", "/api/v1/costs/prices", {"model": "m"}, headers=auth)
    assert status == 403 and "admin" in body["error"]
    assert server.terminate() == 0
    assert not any(secret in line for line in server.lines)  # never in the log, access log included


def test_serve_on_every_interface_requires_credentials_by_default(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'lob.db'}", "--host", "0.0.0.0")
    assert any("authentication required" in line for line in server.lines)
    status, _, body = server.request("GET", "/api/v1/tasks")
    assert status == 401
    assert server.terminate() == 0


def test_serve_on_every_interface_with_auth_off_said_out_loud_warns(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'lob.db'}", "--host", "0.0.0.0", "--auth", "off")
    warning = next(line for line in server.lines if "authentication OFF" in line)
    assert "WARNING" in warning and "0.0.0.0" in warning
    status, _, tasks = server.request("GET", "/api/v1/tasks")
    assert (status, tasks) == (200, [])
    assert server.terminate() == 0


# -- lobstore.client with credentials ------------------------------------------------------------
def test_the_client_sends_its_token_and_a_lobster_reads_it_from_the_environment(tmp_path, servers, monkeypatch):
    from lobstore.client import APIAuthenticationError, APIForbiddenError, Client

    db = f"sqlite:///{tmp_path / 'lob.db'}"
    server = servers(db, "--auth", "required")
    url = f"http://127.0.0.1:{server.port}"
    secret = subprocess.run([str(LOBSTORE), "--db", db, "credentials", "create", "lobboss", "--scope", "write",
                             "--scope", "broker"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.delenv("LOBSTORE_TOKEN", raising=False)
    with pytest.raises(APIAuthenticationError) as caught:
        Client(url, retries=0).list_tasks()
    assert caught.value.status == 401 and caught.value.reason == "missing"

    lobboss = Client(url, token=secret, retries=0)
    for name in ("mine", "theirs"):
        lobboss.create_task(name)
    task_token = lobboss.register("T1", ["minsley/lobmob"], lobster_type="swe")["task_token"]
    monkeypatch.setenv("LOBSTORE_TOKEN", task_token)  # what lobboss puts into the lobster's Job
    lobster = Client(url, retries=0, actor="lobster-swe-t1")
    assert lobster.update_task("T1", status="active")["task"]["status"] == "active"
    assert lobster.add_event("T1", "started")["event_type"] == "started"
    with pytest.raises(APIForbiddenError) as caught:
        lobster.get_task("T2")
    assert "acts on T1 only" in caught.value.message

    # A queued write refused for its credential waits in the outbox instead of being set aside.
    outbox = tmp_path / "outbox.db"
    stale = Client(url, token="lbs_" + "s" * 43, retries=0, outbox=outbox)
    stale.outbox.add("POST", "/api/v1/tasks/T1/events", {"event_type": "note"}, "key-1")
    result = stale.flush()
    assert (result.sent, result.remaining, result.rejected) == (0, 1, []) and "401" in result.error
    assert Client(url, retries=0, outbox=outbox).flush().sent == 1  # with the lobster's own token
    assert [e["event_type"] for e in lobboss.task_events("T1")][-1] == "note"
    assert server.terminate() == 0
    assert not any(task_token in line or secret in line for line in server.lines)
