"""`lobstore serve` end to end: a real cheroot server in a subprocess, on a free loopback port."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lobstore import config
from lobstore.errors import ConfigurationError

from lobstore_server import LOBSTORE, START_TIMEOUT


def test_a_task_runs_its_course_over_http_and_survives_a_restart(db_url, servers):
    server = servers(db_url)
    status, headers, task = server.request("POST", "/api/v1/tasks", {"name": "Unity UI overhaul", "type": "swe",
                                                                     "repos": ["minsley/unity"], "actor": "lobboss"})
    assert status == 201 and task["task_id"] == "T1" and task["status"] == "queued"
    steps = [
        ("POST", "/api/v1/tasks/T1/events", {"event_type": "spawned", "actor": "lobboss", "detail": "lobster-swe-t1"}),
        ("PATCH", "/api/v1/tasks/T1", {"status": "active", "assigned_to": "lobster-swe-t1", "actor": "task_poller"}),
        ("POST", "/api/tasks/T1/events", {"event_type": "note", "actor": "lobster-swe-t1", "data": {"pr": 12}}),
        ("PATCH", "/api/tasks/T1", {"status": "completed", "actor": "lobster-swe-t1"}),
    ]
    for method, path, body in steps:
        status, _, answer = server.request(method, path, body)
        assert status in (200, 201), answer
    status, _, answer = server.request("PATCH", "/api/tasks/T1", {"status": "active"})
    assert status == 409 and answer["code"] == "invalid_transition"

    status, _, events = server.request("GET", "/api/tasks/T1/events")
    expected_trail = [("created", "lobboss"), ("spawned", "lobboss"), ("updated", "task_poller"),
                      ("note", "lobster-swe-t1"), ("updated", "lobster-swe-t1")]
    assert [(e["event_type"], e["actor"]) for e in events] == expected_trail
    assert events[2]["data"]["changes"]["status"] == {"old": "queued", "new": "active"}

    assert server.terminate() == 0
    access = [line for line in server.lines if ".access:" in line]
    assert len(access) == 7  # one line per request
    assert re.search(r'"PATCH /api/tasks/T1" 409 \d+ [\d.]+ms$', access[5])

    again = servers(db_url)
    status, _, task = again.request("GET", "/api/tasks/T1")
    assert status == 200 and task["status"] == "completed" and task["assigned_to"] == "lobster-swe-t1"
    _, _, events = again.request("GET", "/api/tasks/T1/events")
    assert [(e["event_type"], e["actor"]) for e in events] == expected_trail
    _, _, health = again.request("GET", "/health")
    assert health["db"]["ok"] and health["db"]["tasks"] == 1
    assert again.terminate() == 0


def test_a_request_in_flight_at_sigterm_finishes_before_the_server_exits(tmp_path, servers):
    db_url = f"sqlite:///{tmp_path / 'lobwife.db'}"
    server = servers(db_url)
    body = json.dumps({"name": "written during shutdown"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=START_TIMEOUT) as sock:
        sock.sendall(b"POST /api/tasks HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        # "100 Continue" means a worker holds the request and is waiting for its body.
        assert sock.recv(100).startswith(b"HTTP/1.1 100")
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for("stopping")
        sock.sendall(body)
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 201"), response
    assert server.proc.wait(timeout=START_TIMEOUT) == 0

    again = servers(db_url)
    status, _, task = again.request("GET", "/api/tasks/T1")
    assert status == 200 and task["name"] == "written during shutdown"


def test_sigint_stops_it_cleanly_too(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'x.db'}")
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=START_TIMEOUT) == 0


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(port)],
            capture_output=True, text=True, timeout=START_TIMEOUT,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_work_slots_are_chosen_by_backend_and_bounded_by_the_threads(tmp_path, servers, postgres_url):
    # SQLite: one request works at a time, a second beside one that runs long (work.py).
    assert "(8 threads, 1 working at once, up to 3 beside long requests" in servers(
        f"sqlite:///{tmp_path / 'a.db'}", "--threads", "8", "--work-slots", "3").lines[-1]
    assert "(6 threads, 6 working at once" in servers(postgres_url, "--threads", "6").lines[-1]
    for slots in ("0", "9"):
        result = subprocess.run(
            [str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'b.db'}", "--threads", "8", "--work-slots", slots],
            capture_output=True, text=True, timeout=START_TIMEOUT,
        )
        assert result.returncode != 0 and f"--work-slots must be from 1 to --threads (8), got {slots}" in result.stderr
    assert not (tmp_path / "b.db").exists()  # refused before anything was made


# -- settings: flags win over the environment, which wins over the defaults --------------------
def test_serve_settings_come_from_flags_then_environment_then_defaults():
    env = {"LOBSTORE_HOST": "0.0.0.0", "LOBSTORE_PORT": "9000", "LOBSTORE_VAULT": "/srv/vault"}
    assert (config.host(None, {}), config.port(None, {}), config.vault_path(None, {})) == ("127.0.0.1", 8081, None)
    assert (config.host(None, env), config.port(None, env), config.vault_path(None, env)) == (
        "0.0.0.0", 9000, Path("/srv/vault"))
    assert (config.host("::1", env), config.port(0, env), config.vault_path("v", env)) == ("::1", 0, Path("v"))


@pytest.mark.parametrize("value", ["http", "-1", "65536", "80.5", " "])
def test_a_bad_port_in_the_environment_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError, match="LOBSTORE_PORT"):
        config.port(None, {"LOBSTORE_PORT": value})


def test_serve_with_a_vault_syncs_and_reports_its_cycles(tmp_path, servers):
    vault = tmp_path / "vault"
    subprocess.run(["git", "init", "-q", str(vault)], check=True)
    subprocess.run(["git", "-C", str(vault), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
            "--allow-empty", "-m", "init"], check=True)
    server = servers(f"sqlite:///{tmp_path / 'lobwife.db'}", "--vault", str(vault))

    def sync_state(until):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:  # cycles run on the daemon's thread
            _, _, state = server.request("GET", "/api/sync")
            if until(state["last_cycle"] or {}):
                return state
            time.sleep(0.1)
        raise AssertionError(f"no such sync cycle: {state}")

    # The cycle at start-up (nothing to sync yet), then a task, then a cycle on demand.
    sync_state(lambda cycle: cycle.get("time"))
    status, _, _ = server.request("POST", "/api/tasks", {"name": "synced task", "actor": "lobboss"})
    assert status == 201
    status, _, answer = server.request("POST", "/api/sync/trigger")
    assert status == 202, answer
    state = sync_state(lambda cycle: cycle.get("tasks_changed"))
    assert state["enabled"] and state["running"] and state["vault"] == str(vault.resolve())
    assert state["last_cycle"]["tasks_changed"] == 1
    assert state["last_cycle"]["error"] is None and state["last_cycle"]["commit"]
    assert "name: synced task" in (vault / "010-tasks/active/T1.md").read_text()
    log = subprocess.run(["git", "-C", str(vault), "log", "--format=%s"], capture_output=True, text=True, check=True)
    assert log.stdout.splitlines()[0].startswith("lobstore sync: ")
    assert server.terminate() == 0


def test_serve_refuses_a_vault_that_is_not_a_git_repository(tmp_path):
    result = subprocess.run(
        [str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0", "--vault", str(tmp_path)],
        capture_output=True, text=True, timeout=START_TIMEOUT,
    )
    assert result.returncode == 1
    assert "lobstore: error:" in result.stderr and "git" in result.stderr


# -- the token broker and cron jobs inside serve -------------------------------------------------
def test_costs_and_job_runs_over_a_real_server(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'lobwife.db'}", "--broker-ttl", "3600")
    server.request("POST", "/api/tasks", {"name": "a"})
    status, _, event = server.request("POST", "/api/v1/costs", {"task_id": "T1", "model": "claude-opus-4-6",
                                                                "input_tokens": 1200, "output_tokens": 300})
    assert status == 201 and event["cost_usd"] == 0.0135
    status, _, summary = server.request("GET", "/api/costs/summary?period=week&group_by=task")
    assert status == 200 and [(g["key"], g["cost_usd"]) for g in summary["groups"]] == [("T1", 0.0135)]
    status, _, job = server.request("POST", "/api/jobs/task-manager/runs", {"status": "success", "duration": 3.2})
    assert status == 201 and job["run_count"] == 1
    status, _, jobs = server.request("GET", "/api/jobs")
    assert jobs["task-manager"]["last_duration"] == 3.2
    status, _, registration = server.request("POST", "/api/tasks/T1/register", {"repos": ["minsley/lobmob"]})
    assert status == 200 and registration["status"] == "registered"
    lived = (_seconds(registration["expires_at"]) - _seconds(registration["registered_at"]))
    assert 3599 <= lived <= 3601  # --broker-ttl
    status, _, answer = server.request("POST", "/api/token", {"task_id": "T1"})  # no GH_APP_* here
    assert status == 503 and answer["code"] == "no_token_provider"
    assert any("no GitHub App configured" in line for line in server.lines)
    assert server.terminate() == 0


def _seconds(timestamp: str) -> float:
    from lobstore.clock import parse_timestamp

    return parse_timestamp(timestamp).timestamp()


def _settings(**overrides):
    from lobstore.adapters.server import ServeSettings

    return ServeSettings(host="127.0.0.1", port=0, db_url="sqlite://", vault=None, **overrides)


def test_components_take_the_token_provider_and_ttl_from_the_configuration(tmp_path):
    pytest.importorskip("cryptography")
    import base64
    from datetime import timedelta

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from lobstore import NoTokenProviderError, open_store
    from lobstore.adapters.server import build_components

    from fake_github import APP_ID, INSTALL_ID, FakeGitHub

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    github = FakeGitHub(key.public_key())
    try:
        with open_store("sqlite://") as store:
            store.tasks.create(name="a")
            build_components(store, _settings(broker_ttl=timedelta(minutes=5)), environ={})
            registration = store.broker.register("T1", repos=["minsley/lobmob"])
            assert registration.expires_at - registration.registered_at == timedelta(minutes=5)
            with pytest.raises(NoTokenProviderError, match="GH_APP_ID"):
                store.broker.issue_token("T1")
            environ = {"GH_APP_ID": APP_ID, "GH_APP_INSTALL_ID": INSTALL_ID,
                       "GH_APP_PEM": base64.b64encode(pem).decode(), "LOBSTORE_GITHUB_API": github.url}
            build_components(store, _settings(), environ=environ)
            assert store.broker.issue_token("T1").token == "ghs_fake1"
            with pytest.raises(ConfigurationError, match="GH_APP_INSTALL_ID"):  # half-configured: no start
                build_components(store, _settings(), environ={"GH_APP_ID": APP_ID})
    finally:
        github.close()


def test_the_expiry_sweep_runs_beside_the_api_and_stops_on_request():
    from datetime import timedelta

    from lobstore import open_store
    from lobstore.adapters.server import build_components

    with open_store("sqlite://") as store:
        store.tasks.create(name="a")
        store.broker.register("T1", repos=["minsley/lobmob"], ttl=timedelta(microseconds=1))
        components = build_components(store, _settings(expiry_interval=3600), environ={})
        (sweep,) = [s for s in components.services() if s is components.expiry]
        sweep.start()
        try:
            deadline = threading.Event()
            for _ in range(START_TIMEOUT * 10):  # the first sweep runs at start; wait for its result
                if store.tasks.get("T1").broker_status == "expired":
                    break
                deadline.wait(0.1)
            assert store.tasks.get("T1").broker_status == "expired"
            assert [e.action for e in store.broker.audit("T1")][-1] == "registration_expired"
            assert store.events.for_task("T1")[-1].actor == "broker_expiry"
        finally:
            sweep.stop(timeout=START_TIMEOUT)  # an hour's wait between sweeps must not hold it up
        assert not sweep.running


def test_a_failing_sweep_is_logged_and_the_next_one_runs(caplog, monkeypatch):
    from lobstore import StorageError, open_store
    from lobstore.broker.expiry import ExpirySweep

    with open_store("sqlite://") as store:
        sweep = ExpirySweep(store)
        calls = []

        def failing(**_):
            calls.append(1)
            raise StorageError("the database (sqlite) failed: disk I/O error")

        monkeypatch.setattr(store.broker, "expire", failing)
        assert sweep.sweep() == [] and sweep.sweep() == [] and len(calls) == 2
        assert "disk I/O error" in caplog.text
