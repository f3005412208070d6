"""`lobstore serve` end to end: a real cheroot server in a subprocess, on a free loopback port."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
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
