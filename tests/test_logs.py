"""Logs: one JSON object per line with `--log-format json`, and the request id (X-Request-Id in
and out) on every line logged while a request is served."""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import subprocess

import pytest

from lobstore import open_store
from lobstore.adapters.access import RequestLog
from lobstore.adapters.http import make_app
from lobstore.adapters.logs import JsonFormatter, RequestIdFilter, TextFormatter
from lobstore.adapters.metrics import Metrics

from lobstore_server import LOBSTORE, START_TIMEOUT
from wsgi_client import WsgiClient


@pytest.fixture
def log_lines():
    """What the lobstore loggers write, as `lobstore serve --log-format json` writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("lobstore")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def client():
    with open_store("sqlite://") as store:
        yield WsgiClient(RequestLog(make_app(store), metrics=Metrics(store)))


def test_every_line_of_a_request_carries_its_id(client, log_lines):
    response = client.post("/api/jobs/task-manager/runs", {"status": "failed"},
                           headers={"X-Request-Id": "lobboss-7f3a"})
    assert response.status == 201 and response.headers["x-request-id"] == "lobboss-7f3a"
    lines = log_lines()
    job_line = next(line for line in lines if line["logger"] == "lobstore.repositories.jobs")
    access = next(line for line in lines if line["logger"] == "lobstore.access")
    assert job_line["request_id"] == access["request_id"] == "lobboss-7f3a"
    assert "failed run recorded" in job_line["message"]
    assert {"time", "level", "logger", "message"} <= set(job_line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", access["time"])
    assert access["level"] == "INFO"
    assert access["route"] == "/api/jobs/<name>/runs" and access["path"] == "/api/jobs/task-manager/runs"
    assert access["status"] == 201 and access["method"] == "POST"
    assert access["duration_ms"] > 0 and access["bytes"] == len(response.body)


def test_a_missing_or_unusable_request_id_gets_a_new_one(client, log_lines):
    seen = []
    for given in (None, "", "two words", "x" * 129, 'quote"', "ok.id_~:/+=@-1"):
        headers = {} if given is None else {"X-Request-Id": given}
        seen.append(client.get("/api/tasks", headers=headers).headers["x-request-id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in seen[:5])
    assert len(set(seen[:5])) == 5
    assert seen[5] == "ok.id_~:/+=@-1"
    assert [line["request_id"] for line in log_lines() if line["logger"] == "lobstore.access"] == seen


def test_lines_outside_a_request_have_no_request_id(client, log_lines):
    client.get("/api/tasks")
    logging.getLogger("lobstore.test").info("after the request")
    last = log_lines()[-1]
    assert last["message"] == "after the request" and "request_id" not in last


def test_an_error_in_a_request_is_one_json_line_with_its_traceback(tmp_path, log_lines):
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        client = WsgiClient(RequestLog(make_app(store)))
        with store.backend.writing() as conn:
            conn.exec_driver_sql("ALTER TABLE tasks RENAME TO tasks_gone")
        response = client.get("/api/tasks/T1", headers={"X-Request-Id": "broken-db"})
    assert response.status == 503
    error = next(line for line in log_lines() if line["level"] == "ERROR")
    assert error["request_id"] == "broken-db" and "no such table" in error["exception"]


def test_the_access_log_can_be_turned_off_and_metrics_still_count(log_lines):
    with open_store("sqlite://") as store:
        metrics = Metrics(store)
        client = WsgiClient(RequestLog(make_app(store, metrics=metrics), metrics=metrics, access_log=False))
        assert client.get("/api/tasks").headers["x-request-id"]
        body = client.get("/metrics").body.decode()
    assert not [line for line in log_lines() if line["logger"] == "lobstore.access"]
    assert 'lobstore_http_requests_total{method="GET",route="/api/tasks",status="200"} 1.0' in body


def test_text_lines_name_their_request():
    formatter = TextFormatter()
    record = logging.LogRecord("lobstore.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.request_id = "abc"
    assert formatter.format(record).endswith("INFO lobstore.x: hello you [request abc]")


def test_serve_logs_json_lines_with_the_request_id(tmp_path):
    proc = subprocess.Popen(
        [str(LOBSTORE), "--log-format", "json", "serve", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        for raw in proc.stdout:
            lines.append(json.loads(raw))  # every line is one JSON object
            if "serving" in lines[-1]["message"]:
                break
        port = int(re.search(r":(\d+) ", lines[-1]["message"]).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT)
        conn.request("GET", "/api/tasks/T404", headers={"X-Request-Id": "probe-1"})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.getheader("X-Request-Id") == "probe-1"
        proc.terminate()
        rest = [json.loads(raw) for raw in proc.stdout]
    finally:
        proc.kill()
        proc.wait()
    access = [line for line in rest if line["logger"] == "lobstore.access"]
    assert len(access) == 1 and access[0]["request_id"] == "probe-1" and access[0]["status"] == 404
    assert rest[-1]["message"] == "stopped"


def test_serve_without_the_access_log(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'db.sqlite'}", "--no-access-log")
    server.request("GET", "/api/tasks")
    assert server.terminate() == 0
    assert not [line for line in server.lines if "lobstore.access" in line]


def test_a_bad_log_format_in_the_environment_is_refused(tmp_path):
    run = subprocess.run([str(LOBSTORE), "--db", f"sqlite:///{tmp_path / 'x.db'}", "migrate", "--dry-run"],
                         capture_output=True, text=True, env={"LOBSTORE_LOG_FORMAT": "xml", "PATH": "/usr/bin"})
    assert run.returncode == 1 and "log format must be text or json" in run.stderr
