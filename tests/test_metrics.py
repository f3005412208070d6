"""`GET /metrics`: Prometheus text that the official parser reads, with counters that move as
requests, tokens, job runs and background passes happen, and gauges read from the database."""

from __future__ import annotations

import http.client
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

import lobstore
from lobstore import IssuedToken, open_store
from lobstore.adapters.access import RequestLog
from lobstore.adapters.http import make_app
from lobstore.adapters.metrics import Metrics
from lobstore.broker.expiry import ExpirySweep
from lobstore.services import BackgroundService
from lobstore.models import SyncState

from wsgi_client import WsgiClient


def scrape(client: WsgiClient) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Provider:
    def issue(self, repos):
        return IssuedToken("ghs_metrics", datetime.now(timezone.utc) + timedelta(hours=1))


@pytest.fixture
def served():
    """The app as `lobstore serve` builds it: the metrics see every request."""
    with open_store("sqlite://") as store:
        metrics = Metrics(store, cache_seconds=0)
        client = WsgiClient(RequestLog(make_app(store, metrics=metrics), metrics=metrics, access_log=False))
        client.store, client.metrics = store, metrics
        yield client


def test_request_counters_and_histograms_move_per_route_pattern_and_status(served):
    before = scrape(served)
    assert served.post("/api/tasks", {"name": "a"}).status == 201
    for ref in ("T1", "t1", "1"):
        assert served.get(f"/api/tasks/{ref}").status == 200
    assert served.get("/api/tasks/T99").status == 404
    assert served.get("/no/such/route").status == 404
    after = scrape(served)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"method": "GET", "route": "/api/tasks/<ref>"}
    assert moved("lobstore_http_requests_total", **route, status="200") == 3  # the pattern, not T1 / t1 / 1
    assert moved("lobstore_http_requests_total", **route, status="404") == 1
    assert moved("lobstore_http_requests_total", method="POST", route="/api/tasks", status="201") == 1
    assert moved("lobstore_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("lobstore_http_request_duration_seconds_count", **route, status="200") == 3
    assert moved("lobstore_http_request_duration_seconds_bucket", **route, status="200", le="+Inf") == 3
    assert not any("T1" in str(labels) for _, labels in after)  # no raw paths as labels
    # The first scrape itself was counted, under its own route.
    assert value(after, "lobstore_http_requests_total", method="GET", route="/metrics", status="200") == 1


def test_database_gauges_follow_the_data(served):
    store = served.store
    for n in range(3):
        store.tasks.create(name=f"t{n}")
    store.tasks.update("T1", status="active")
    store.sync_state.save("/data/vault", SyncState(last_event_id=store.events.latest_id()))
    store.events.add("T2", "note")
    store.events.add("T3", "note")
    samples = scrape(served)
    assert value(samples, "lobstore_tasks", status="queued") == 2
    assert value(samples, "lobstore_tasks", status="active") == 1
    assert value(samples, "lobstore_tasks", status="completed") == 0  # every status is present
    assert value(samples, "lobstore_database_up") == 1
    assert value(samples, "lobstore_database_size_bytes") > 0
    assert value(samples, "lobstore_feed_last_event_id") == store.events.latest_id()
    assert value(samples, "lobstore_feed_lag_events", vault="/data/vault") == 2
    assert 0 <= value(samples, "lobstore_feed_lag_seconds", vault="/data/vault") < 60
    assert value(samples, "lobstore_info", version=lobstore.__version__, backend="sqlite") == 1


def test_tokens_issued_and_refused_are_counted_by_reason(served):
    served.store.set_token_provider(Provider())
    served.post("/api/tasks", {"name": "a"})
    assert served.post("/api/token", {"task_id": "T1"}).status == 403  # not registered
    assert served.post("/api/tasks/T1/register", {"repos": ["acme/web"]}).status in (200, 201)
    for _ in range(2):
        assert served.post("/api/token", {"task_id": "T1"}).status == 200
    assert served.delete("/api/tasks/T1").status == 200  # deregistered (lobwife's broker route)
    assert served.post("/api/token", {"task_id": "T1"}).status == 403
    samples = scrape(served)
    assert value(samples, "lobstore_broker_tokens_issued_total", source="minted") == 1
    assert value(samples, "lobstore_broker_tokens_issued_total", source="cache") == 1
    assert value(samples, "lobstore_broker_tokens_refused_total", reason="not_registered") == 1
    assert value(samples, "lobstore_broker_tokens_refused_total", reason="deregistered") == 1
    assert ("lobstore_broker_tokens_refused_total", (("reason", "expired"),)) in samples  # at 0 from the start


def test_job_runs_by_status_and_the_last_run_of_each_job(served):
    for status in ("success", "failed", "failed"):
        assert served.post("/api/jobs/task-manager/runs", {"status": status, "duration": 1.5}).status == 201
    assert served.post("/api/jobs/audit/runs", {"status": "success"}).status == 201
    samples = scrape(served)
    assert value(samples, "lobstore_job_runs_total", job="task-manager", status="failed") == 2
    assert value(samples, "lobstore_job_runs_total", job="task-manager", status="success") == 1
    assert value(samples, "lobstore_job_last_run_failed", job="task-manager") == 1
    assert value(samples, "lobstore_job_last_run_failed", job="audit") == 0
    assert abs(value(samples, "lobstore_job_last_run_timestamp_seconds", job="audit") - time.time()) < 60
    assert value(samples, "lobstore_job_enabled", job="audit") == 1


def test_write_lock_waits_are_observed_for_every_write(served):
    before = value(scrape(served), "lobstore_db_write_lock_wait_seconds_count")
    for n in range(5):
        served.store.tasks.create(name=f"t{n}")
    assert value(scrape(served), "lobstore_db_write_lock_wait_seconds_count") - before == 5


class Flaky(BackgroundService):
    name = "flaky service"

    def __init__(self) -> None:
        super().__init__(interval=3600)
        self.calls = 0

    def run_pass(self):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("disk full")


def test_background_passes_failures_and_last_success(served):
    sweep, flaky = ExpirySweep(served.store), Flaky()
    served.metrics.watch([sweep, flaky])
    samples = scrape(served)
    assert value(samples, "lobstore_service_passes_total", service="flaky_service", outcome="failure") == 0
    sweep.sweep()
    for _ in range(3):
        flaky.run_now()
    samples = scrape(served)
    assert value(samples, "lobstore_service_passes_total", service="broker_expiry_sweep", outcome="success") == 1
    assert value(samples, "lobstore_service_passes_total", service="flaky_service", outcome="success") == 2
    assert value(samples, "lobstore_service_passes_total", service="flaky_service", outcome="failure") == 1
    assert value(samples, "lobstore_service_pass_duration_seconds_count", service="flaky_service") == 3
    assert abs(value(samples, "lobstore_service_last_success_timestamp_seconds", service="flaky_service")
               - time.time()) < 60


def test_a_database_that_fails_is_reported_not_a_failed_scrape(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        client = WsgiClient(make_app(store, metrics=Metrics(store, cache_seconds=0)))
        with store.backend.writing() as conn:
            conn.exec_driver_sql("ALTER TABLE tasks RENAME TO tasks_gone")  # reads of tasks now fail
        samples = scrape(client)
        assert value(samples, "lobstore_database_up") == 0
        assert ("lobstore_tasks", (("status", "queued"),)) not in samples


def test_database_figures_are_read_once_per_cache_period():
    with open_store("sqlite://") as store:
        client = WsgiClient(make_app(store, metrics=Metrics(store, cache_seconds=3600)))
        assert value(scrape(client), "lobstore_tasks", status="queued") == 0
        store.tasks.create(name="later")
        assert value(scrape(client), "lobstore_tasks", status="queued") == 0  # cached
        assert value(scrape(WsgiClient(make_app(store, metrics=Metrics(store, cache_seconds=0)))),
                     "lobstore_tasks", status="queued") == 1


def test_metrics_of_a_served_store_with_a_vault_over_http(tmp_path, servers):
    vault = tmp_path / "vault"
    subprocess.run(["git", "init", "-q", str(vault)], check=True)
    server = servers(f"sqlite:///{tmp_path / 'lobwife.db'}", "--vault", str(vault), "--sync-interval", "3600")
    server.request("POST", "/api/tasks", {"name": "rendered into the vault"})
    server.request("POST", "/api/sync/trigger", {})
    deadline = time.monotonic() + 60
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        passes = {tuple(sorted(s.labels.items())): s.value for s in families["lobstore_service_passes"].samples
                  if s.name.endswith("_total")}
        if passes.get((("outcome", "success"), ("service", "vault_sync")), 0) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status == 200
    assert passes[(("outcome", "success"), ("service", "vault_sync"))] >= 2
    assert families["lobstore_sync_files_changed"].samples[0].value > 0
    assert re.search(r'^lobstore_http_requests_total\{method="POST",route="/api/tasks",status="201"\} 1\.0$',
                     text, re.M)
    assert server.terminate() == 0


def test_runs_of_serves_own_job_scheduler_are_counted_by_status(tmp_path, servers):
    pytest.importorskip("croniter")
    jobs = tmp_path / "jobs.toml"
    jobs.write_text('[jobs.ok]\ncommand = ["true"]\nschedule = "0 0 1 1 *"\n'
                    '[jobs.broken]\ncommand = ["false"]\nschedule = "0 0 1 1 *"\n')
    server = servers(f"sqlite:///{tmp_path / 'lobwife.db'}", "--jobs", str(jobs))
    for name in ("ok", "broken"):
        status, _, _ = server.request("POST", f"/api/jobs/{name}/trigger", {})
        assert status in (200, 202)

    deadline = time.monotonic() + 60
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        runs = {tuple(sorted(s.labels.items())): s.value
                for f in text_string_to_metric_families(text) if f.name == "lobstore_job_runs"
                for s in f.samples if s.name.endswith("_total")}
        if len(runs) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert runs == {(("job", "ok"), ("status", "success")): 1.0, (("job", "broken"), ("status", "failed")): 1.0}
    assert 'lobstore_service_passes_total{outcome="success",service="job_scheduler"}' in text
    assert server.terminate() == 0
