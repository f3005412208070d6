"""``GET /metrics``: what an operator alerts on, in Prometheus text format (``prometheus_client``).

Two kinds of figures:

- **Counted in this process** as things happen: HTTP requests by method, route pattern and
  status, with latency histograms (``access.RequestLog`` reports them); the wait for the
  database's writer lock; broker tokens issued and refused; cron job runs by status; every
  background service's passes (vault sync, broker expiry sweep, scheduled backups), their
  duration, failures and last success, and the files each sync cycle changed. Counters start
  at zero when the process starts (Prometheus' ``rate()`` and ``increase()`` expect that).
- **Read from the database** when scraped, so they hold whatever process wrote: task counts by
  status, the event feed's newest id and each vault sync's lag behind it (events and seconds),
  each cron job's last run and whether it failed, the database's size, and whether the
  database answers at all. The read is one grouped count over ``tasks`` (an index-only scan
  of ``(status, id)``) and a few one-row queries; its result is kept for ``cache_seconds``
  (default 15) so that scrapes from several Prometheus servers cost one read.
  ``bench/bench_backup.py`` measures it on 100,000 and 1,000,000 tasks.

Each :class:`Metrics` has its own registry (several apps in one process, as in tests, do not
share counters). Process figures (CPU, memory, open files) come from prometheus_client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .. import __version__
from ..repositories.base import StoreObserver
from ..services import BackgroundService
from ..store import Store

log = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 15.0
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOCK_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
PASS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
# What generate_latest() writes; every Prometheus reads it (newer clients announce 1.0.0 by default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REFUSAL_REASONS = ("not_registered", "deregistered", "expired", "terminal")


class Metrics(StoreObserver):
    """The metrics of one served store. Attach it with :meth:`watch` (background services) and
    pass it to ``make_app`` (the route) and ``RequestLog`` (the requests)."""

    def __init__(self, store: Store, *, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lobstore_http_requests", "HTTP requests answered, by route pattern and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("lobstore_http_request_duration_seconds",
                                 "Time to answer an HTTP request, by route pattern and status",
                                 ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=r)
        self.lock_wait = Histogram("lobstore_db_write_lock_wait_seconds",
                                   "Time a write waited for its transaction to begin (SQLite: the writer lock)",
                                   buckets=LOCK_BUCKETS, registry=r)
        self.tokens_issued = Counter("lobstore_broker_tokens_issued", "GitHub tokens handed out by the broker",
                                     ["source"], registry=r)
        self.tokens_refused = Counter("lobstore_broker_tokens_refused", "Token requests the broker refused",
                                      ["reason"], registry=r)
        self.job_runs = Counter("lobstore_job_runs", "Cron job runs recorded, by job and status",
                                ["job", "status"], registry=r)
        self.passes = Counter("lobstore_service_passes", "Passes of a background service, by outcome",
                              ["service", "outcome"], registry=r)
        self.pass_seconds = Histogram("lobstore_service_pass_duration_seconds",
                                      "Duration of a background service's pass (a sync cycle, a backup, ...)",
                                      ["service"], buckets=PASS_BUCKETS, registry=r)
        self.last_success = Gauge("lobstore_service_last_success_timestamp_seconds",
                                  "Unix time the service's last successful pass ended", ["service"], registry=r)
        self.sync_files = Counter("lobstore_sync_files_changed", "Vault files the sync wrote, moved or removed",
                                  registry=r)
        for source in ("minted", "cache"):
            self.tokens_issued.labels(source)
        for reason in REFUSAL_REASONS:
            self.tokens_refused.labels(reason)
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._children_lock = threading.Lock()
        r.register(StoreCollector(store, cache_seconds=cache_seconds))
        ProcessCollector(registry=r)
        store.set_observer(self)

    # -- the request path (access.RequestLog) ------------------------------------------------
    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: done once per key
            with self._children_lock:
                children = self._request_children.setdefault(
                    key, (self.requests.labels(*key), self.latency.labels(*key)))
        children[0].inc()
        children[1].observe(seconds)

    # -- the store (StoreObserver) -----------------------------------------------------------
    def write_lock_waited(self, seconds: float) -> None:
        self.lock_wait.observe(seconds)

    def token_issued(self, reused: bool) -> None:
        self.tokens_issued.labels("cache" if reused else "minted").inc()

    def token_refused(self, reason: str) -> None:
        self.tokens_refused.labels(reason).inc()

    def job_run(self, name: str, status: str) -> None:
        self.job_runs.labels(name, status).inc()

    # -- background services -----------------------------------------------------------------
    def watch(self, services: Iterable[BackgroundService]) -> None:
        for service in services:
            label = service_label(service)
            for outcome in ("success", "failure"):
                self.passes.labels(label, outcome)
            known = getattr(service, "last_success_timestamp", None)  # e.g. the newest backup file
            if callable(known) and (at := known()) is not None:
                self.last_success.labels(label).set(at)
            service.add_listener(self._on_pass)

    def _on_pass(self, service: BackgroundService, result: Any, error: str | None, seconds: float) -> None:
        label = service_label(service)
        self.passes.labels(label, "failure" if error else "success").inc()
        self.pass_seconds.labels(label).observe(seconds)
        if error is None:
            self.last_success.labels(label).set(time.time())
        files = getattr(result, "files_changed", None)  # a vault sync cycle's result
        if isinstance(files, int):
            self.sync_files.inc(files)

    # -- the route ---------------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE

    def route(self) -> Callable[[], Any]:
        """The Bottle handler of ``GET /metrics``."""
        from bottle import HTTPResponse

        def metrics() -> HTTPResponse:
            body, content_type = self.exposition()
            return HTTPResponse(body, status=200, headers={"Content-Type": content_type})

        return metrics


def service_label(service: BackgroundService) -> str:
    return service.name.replace(" ", "_")


class StoreCollector(Collector):
    """Figures read from the database at scrape time (kept for ``cache_seconds``). A database
    that does not answer gives ``lobstore_database_up 0``, never a failed scrape."""

    def __init__(self, store: Store, *, cache_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._families: list[GaugeMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.cache_seconds:
                self._families = self._read()
                self._read_at = now
            families = self._families
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        info = GaugeMetricFamily("lobstore_info", "This lobstore: version and backend", labels=["version", "backend"])
        info.add_metric([__version__, self.store.backend.name], 1)
        up = GaugeMetricFamily("lobstore_database_up", "Whether the database answered the last read (1) or not (0)")
        began = time.perf_counter()
        try:
            families = list(self._from_database())
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer, saying the database is down
            log.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            return [info, up]
        up.add_metric([], 1)
        took = GaugeMetricFamily("lobstore_metrics_database_read_seconds",
                                 "How long reading the database's figures took (at most once per cache period)")
        took.add_metric([], time.perf_counter() - began)
        return [info, up, took, *families]

    def _from_database(self) -> Iterator[GaugeMetricFamily]:
        from ..status import STATUSES

        store = self.store
        counts = store.tasks.count_by("status")
        tasks = GaugeMetricFamily("lobstore_tasks", "Tasks by status", labels=["status"])
        for status in STATUSES:
            tasks.add_metric([status], counts.get(status, 0))
        yield tasks

        size = store.backend.size_bytes()
        if size is not None:
            yield GaugeMetricFamily("lobstore_database_size_bytes", "Space the database takes on disk", value=size)

        latest = store.events.latest_id()
        yield GaugeMetricFamily("lobstore_feed_last_event_id", "The newest id of the task event feed", value=latest)
        lag = GaugeMetricFamily("lobstore_feed_lag_events", "Events a vault sync has not rendered yet", labels=["vault"])
        lag_seconds = GaugeMetricFamily("lobstore_feed_lag_seconds",
                                        "Age of the oldest event a vault sync has not rendered yet (0: none waits)",
                                        labels=["vault"])
        now = time.time()
        for vault, state in sorted(store.sync_state.all().items()):
            lag.add_metric([vault], max(latest - state.last_event_id, 0))
            waiting = store.events.feed(after=state.last_event_id, limit=1) if latest > state.last_event_id else []
            lag_seconds.add_metric([vault], max(now - waiting[0].created_at.timestamp(), 0.0) if waiting else 0.0)
        yield lag
        yield lag_seconds

        last_run = GaugeMetricFamily("lobstore_job_last_run_timestamp_seconds", "Unix time of a job's last run",
                                     labels=["job"])
        failed = GaugeMetricFamily("lobstore_job_last_run_failed", "Whether a job's last run did not succeed (1)",
                                   labels=["job"])
        enabled = GaugeMetricFamily("lobstore_job_enabled", "Whether a job is enabled (1)", labels=["job"])
        for name, job in store.jobs.list().items():
            if job.last_run is not None:
                last_run.add_metric([name], job.last_run.timestamp())
                failed.add_metric([name], 0 if job.last_status == "success" else 1)
            enabled.add_metric([name], 1 if job.enabled else 0)
        yield last_run
        yield failed
        yield enabled
