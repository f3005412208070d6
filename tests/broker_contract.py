"""The broker, job state and JSON import contract, run against every backend (the ``store``
fixture of conftest.py) by test_broker.py."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from lobstore import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from lobstore.errors import (
    JobRunningError,
    NoJobRunnerError,
    NoTokenProviderError,
    TokenProviderError,
    TokenRefusedError,
)
from lobstore.importers.json_state import import_json_state
from lobstore.models import IssuedToken
from lobstore.repositories.jobs import MAX_OUTPUT_LINES
from lobstore.schema import broker_tasks, metadata, schema_version

from faults import break_event_inserts

SAMPLE_JOBS = {"task-manager": {"last_run": "2026-02-16T10:00:00+00:00", "last_status": "success",
                                "last_duration": 3.2, "last_output": "ok", "run_count": 42,
                                "fail_count": 1, "enabled": True}}
SAMPLE_TASKS = {"test-task-1": {"repos": ["minsley/lobmob"], "lobster_type": "swe",
                                "registered_at": "2026-02-16T10:00:00+00:00", "status": "active",
                                "token_count": 3}}
SAMPLE_AUDIT = [{"timestamp": "2026-02-16T10:00:00+00:00", "task_id": "test-task-1",
                 "repos": ["minsley/lobmob"], "action": "task_registered"}]


class FakeProvider:
    """Mints numbered tokens living ``lifetime``; fails with ``error`` when set."""

    def __init__(self, lifetime: timedelta = timedelta(hours=1)) -> None:
        self.lifetime = lifetime
        self.calls: list[list[str]] = []
        self.error: Exception | None = None

    def issue(self, repos):
        self.calls.append(None if repos is None else list(repos))
        if self.error is not None:
            raise self.error
        return IssuedToken(f"ghs_secret_{len(self.calls)}", datetime.now(timezone.utc) + self.lifetime)


class FakeRunner:
    """A scheduler as the store sees it (lobstore.repositories.jobs.JobRunner)."""

    def __init__(self, names=("task-manager", "busy")) -> None:
        self.names = list(names)
        self.triggered: list[str] = []
        self.running: set[str] = set()
        self.slot = datetime(2026, 3, 1, 12, 5, tzinfo=timezone.utc)

    def job_names(self) -> list[str]:
        return self.names

    def trigger_job(self, name: str) -> None:
        if name in self.running:
            raise JobRunningError(f"Job {name} is already running", job=name)
        self.triggered.append(name)

    def next_slot(self, name: str):
        return self.slot if name in self.names else None


UPSTREAM_JOB_KEYS = ("description", "schedule", "enabled", "running", "last_run", "last_status", "last_duration",
                     "run_count", "fail_count", "next_run")


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 3, 1, hour, minute, second, tzinfo=timezone.utc)


def write_state(folder, jobs=SAMPLE_JOBS, tasks=SAMPLE_TASKS, audit=SAMPLE_AUDIT):
    for name, data in (("jobs.json", jobs), ("tasks.json", tasks), ("token-audit.json", audit)):
        if data is not None:
            (folder / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return folder


def dump(store) -> dict[str, list[tuple]]:
    """Every row of every data table: what "changes nothing" is checked against."""
    with store.backend.reading() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(sa.select(table))), key=repr)
            for table in metadata.sorted_tables if table is not schema_version
        }


class BrokerJobsContract:
    __test__ = False

    @pytest.fixture
    def state_dir(self, tmp_path):
        folder = tmp_path / "lobwife-state"  # apart from any database file in tmp_path
        folder.mkdir()
        return folder

    @pytest.fixture
    def provider(self, store):
        provider = FakeProvider()
        store.set_token_provider(provider)
        return provider

    def registered(self, store, repos=("minsley/lobmob",), **fields):
        task = store.tasks.create(name="broker task", **fields)
        store.broker.register(task.ref, repos=list(repos), lobster_type="swe", actor="lobster-swe-t1")
        return task

    def audit_actions(self, store, task=None):
        return [e.action for e in store.broker.audit(task)]

    def events_of(self, store, ref):
        return [e.event_type for e in store.events.for_task(ref)]

    # -- registration -------------------------------------------------------------------------
    def test_register_shows_on_the_task_and_writes_audit_and_event(self, store):
        task = store.tasks.create(name="x")
        reg = store.broker.register("T1", repos=["minsley/lobmob", "minsley/unity"], lobster_type="swe",
                                    actor="lobster-swe-t1")
        assert reg.to_dict()["status"] == "active" and reg.task_ref == "T1"
        assert reg.expires_at - reg.registered_at == timedelta(hours=24)
        data = store.tasks.get(task.id).to_dict()
        assert data["broker_repos"] == ["minsley/lobmob", "minsley/unity"]
        assert data["broker_status"] == "active"
        assert data["broker_registered_at"] == reg.to_dict()["registered_at"]
        assert data["token_count"] == 0
        listed = store.tasks.list()[0].to_dict()
        assert listed["broker_status"] == "active"
        (entry,) = store.broker.audit()
        assert entry.to_dict() == {"timestamp": reg.to_dict()["registered_at"], "task_id": "T1",
                                   "repos": ["minsley/lobmob", "minsley/unity"], "action": "task_registered",
                                   "credential": None}
        event = store.events.for_task("T1")[-1]
        assert (event.event_type, event.actor) == ("broker_registered", "lobster-swe-t1")
        assert event.data["repos"] == ["minsley/lobmob", "minsley/unity"]

    def test_unregistered_task_json_has_empty_broker_fields(self, store):
        data = store.tasks.create(name="x").to_dict()
        assert (data["broker_repos"], data["broker_status"], data["broker_registered_at"], data["token_count"]) \
            == (None, None, None, 0)
        assert store.tasks.get(1).to_dict() == data

    @pytest.mark.parametrize("repos", [None, [], ["not-a-repo"], "minsley/lobmob", [1]])
    def test_register_needs_repos_and_writes_nothing(self, store, repos):
        store.tasks.create(name="x")
        before = dump(store)
        with pytest.raises(ValidationError) as exc:
            store.broker.register("T1", repos=repos)
        assert exc.value.field == "repos"
        assert dump(store) == before

    def test_register_bad_lobster_type_names_the_field(self, store):
        store.tasks.create(name="x")
        with pytest.raises(ValidationError) as exc:
            store.broker.register("T1", repos=["a/b"], lobster_type="Not A Type")
        assert exc.value.field == "lobster_type"

    def test_register_unknown_or_ended_task_is_refused(self, store):
        with pytest.raises(NotFoundError):
            store.broker.register("T9", repos=["a/b"])
        store.tasks.create(name="x")
        store.tasks.update(1, status="failed")
        with pytest.raises(ConflictError, match="ended task"):
            store.broker.register("T1", repos=["a/b"])
        assert store.broker.audit() == []

    def test_register_again_renews_keeps_count_and_drops_the_cached_token(self, store, provider):
        self.registered(store)
        first = store.broker.issue_token("T1")
        reg = store.broker.register("T1", repos=["minsley/other"], ttl=timedelta(hours=2))
        assert reg.repos == ("minsley/other",) and reg.token_count == 1
        assert reg.expires_at - reg.registered_at == timedelta(hours=2)
        second = store.broker.issue_token("T1")
        assert second.token != first.token and provider.calls[-1] == ["minsley/other"]
        assert store.events.for_task("T1")[-2].data["renewed"] is True

    def test_store_registration_ttl_is_configurable(self, store):
        store.set_registration_ttl(timedelta(hours=3))
        self.registered(store)
        reg = store.broker.get("T1")
        assert reg.expires_at - reg.registered_at == timedelta(hours=3)
        with pytest.raises(ConfigurationError):
            store.set_registration_ttl(timedelta(0))
        with pytest.raises(ValidationError):
            store.broker.register("T1", repos=["a/b"], ttl=timedelta(seconds=-1))

    def test_deregister(self, store):
        self.registered(store)
        reg = store.broker.deregister("T1", actor="lobster-swe-t1")
        assert reg.status == "deregistered"
        assert store.tasks.get(1).broker_status == "deregistered"
        assert self.audit_actions(store) == ["task_registered", "task_deregistered"]
        assert self.events_of(store, "T1")[-1] == "broker_deregistered"
        before = dump(store)
        assert store.broker.deregister("T1").status == "deregistered"  # again: nothing written
        assert dump(store) == before
        store.tasks.create(name="never registered")
        with pytest.raises(NotFoundError, match="not registered"):
            store.broker.deregister("T2")
        with pytest.raises(NotFoundError):
            store.broker.get("T2")

    @pytest.mark.parametrize("how", ["cancel", "update"])
    def test_cancelling_deregisters_in_the_same_transaction(self, store, how):
        self.registered(store)
        if how == "cancel":
            task = store.tasks.cancel("T1", actor="lobboss")
        else:
            task = store.tasks.update("T1", status="cancelled", actor="lobboss").task
        assert task.broker_status == "deregistered" == store.tasks.get(1).broker_status
        assert self.events_of(store, "T1")[-2:] == ["cancelled", "broker_deregistered"]
        assert self.audit_actions(store)[-1] == "task_deregistered"

    def test_failed_deregistration_rolls_back_the_cancel(self, store):
        self.registered(store)
        break_event_inserts(store, "broker_deregistered")
        with pytest.raises(Exception):
            store.tasks.cancel("T1")
        task = store.tasks.get("T1")
        assert (task.status, task.broker_status) == ("queued", "active")
        assert self.audit_actions(store) == ["task_registered"]

    def test_cancel_without_registration_still_works(self, store):
        store.tasks.create(name="x")
        assert store.tasks.cancel("T1").broker_status is None
        assert store.broker.audit() == []

    # -- lobwife's lookups and standalone registrations -----------------------------------------
    def test_register_by_name_finds_the_task_by_ref_legacy_id_slug_or_name(self, store):
        store.tasks.create(name="Fix login", slug="fix-login", legacy_id="task-2026-02-15-a1b2")
        for key in ("T1", "1", "task-2026-02-15-a1b2", "fix-login", "Fix login"):
            reg = store.broker.register_by_name(key, repos=["a/b"], lobster_type="swe")
            assert (reg.task_ref, reg.standalone) == ("T1", False), key
        assert [r.key for r in store.broker.list()] == ["T1"]  # one registration, renewed
        assert self.audit_actions(store, "T1") == ["task_registered"] * 5

    def test_a_shared_slug_or_name_means_the_newest_task(self, store):
        store.tasks.create(name="Nightly audit", slug="nightly")
        store.tasks.create(name="Nightly audit", slug="nightly")
        assert store.broker.register_by_name("nightly", repos=["a/b"]).task_ref == "T2"
        assert store.broker.register_by_name("Nightly audit", repos=["a/b"]).task_ref == "T2"

    def test_a_name_that_matches_no_task_is_registered_standalone(self, store, provider):
        store.tasks.create(name="x")
        reg = store.broker.register_by_name("verify-test", repos=["minsley/lobmob-vault"], lobster_type="test")
        assert reg.to_dict() | {"registered_at": None, "expires_at": None} == {
            "task_id": "verify-test", "repos": ["minsley/lobmob-vault"], "lobster_type": "test",
            "registered_at": None, "expires_at": None, "status": "active", "token_count": 0, "standalone": True}
        # T99 names no task either: lobwife kept such a registration too.
        assert store.broker.register_by_name("T99", repos=["a/b"]).key == "T99"
        assert store.tasks.get("T1").broker_status is None and store.tasks.count() == 1
        token = store.broker.issue_token("verify-test")
        assert store.broker.issue_token("verify-test") == token and provider.calls == [["minsley/lobmob-vault"]]
        assert [(r.key, r.token_count) for r in store.broker.list()] == [("T99", 0), ("verify-test", 2)]
        assert [e.to_dict()["action"] for e in store.broker.audit("verify-test")] == [
            "task_registered", "token_issued", "token_issued"]
        assert self.events_of(store, "T1") == ["created"]  # no task was touched

    def test_registering_a_standalone_name_again_renews_it(self, store, provider):
        first = store.broker.register_by_name("verify-test", repos=["a/b"])
        token = store.broker.issue_token("verify-test")
        again = store.broker.register_by_name("verify-test", repos=["a/c"])
        assert (again.id, again.repos, again.token_count) == (first.id, ("a/c",), 1)
        assert store.broker.issue_token("verify-test") != token and provider.calls[-1] == ["a/c"]

    def test_deregister_by_name_ends_the_tasks_and_the_standalone_registration(self, store, provider):
        self.registered(store, slug="the-slug")
        store.broker.register_by_name("verify-test", repos=["a/b"])
        assert [r.key for r in store.broker.deregister_by_name("the-slug", actor="task-manager")] == ["T1"]
        assert store.tasks.get("T1").status == "queued"  # the task itself is untouched
        assert self.events_of(store, "T1")[-1] == "broker_deregistered"
        ended = store.broker.deregister_by_name("verify-test")
        assert [(r.key, r.status) for r in ended] == [("verify-test", "deregistered")]
        assert self.audit_actions(store, "verify-test") == ["task_registered", "task_deregistered"]
        before = dump(store)
        assert store.broker.deregister_by_name("verify-test") == [] == store.broker.deregister_by_name("nothing")
        assert dump(store) == before
        with pytest.raises(TokenRefusedError) as exc:
            store.broker.issue_token("verify-test")
        assert exc.value.reason == "deregistered"

    def test_a_token_is_found_by_slug_name_or_assignee_of_a_registered_task(self, store, provider):
        store.tasks.create(name="Fix login", slug="fix-login")  # not registered: skipped
        task = self.registered(store, slug="fix-login")
        store.tasks.update(task.ref, status="active", assigned_to="lobster-swe-t2")
        for key in ("fix-login", "broker task", "lobster-swe-t2", "T2"):
            store.broker.issue_token(key)
        assert store.broker.get("T2").token_count == 4 and len(provider.calls) == 1
        with pytest.raises(TokenRefusedError) as exc:
            store.broker.issue_token("T1")
        assert exc.value.reason == "not_registered"

    def test_standalone_registrations_expire_with_an_audit_row_and_no_event(self, store):
        store.broker.register_by_name("verify-test", repos=["a/b"])
        (expired,) = store.broker.expire(as_of=datetime.now(timezone.utc) + timedelta(days=2))
        assert (expired.key, expired.status) == ("verify-test", "expired")
        assert self.audit_actions(store, "verify-test") == ["task_registered", "registration_expired"]
        assert store.events.latest_id() == 0

    @pytest.mark.parametrize("key", ["", "   ", "x" * 201, "a\x00b", 5])
    def test_a_name_that_cannot_be_kept_is_refused(self, store, key):
        before = dump(store)
        with pytest.raises(ValidationError) as exc:
            store.broker.register_by_name(key, repos=["a/b"])
        assert exc.value.field == "task_id"
        assert dump(store) == before

    def test_list_is_newest_first_and_summary_counts(self, store, provider):
        self.registered(store)
        store.broker.register_by_name("verify-test", repos=["a/b"])
        store.broker.issue_token("T1")
        store.broker.deregister_by_name("verify-test")
        assert [r.key for r in store.broker.list()] == ["verify-test", "T1"]
        assert [r.key for r in store.broker.list(limit=1)] == ["verify-test"]
        assert [r.key for r in store.broker.list(status="active")] == ["T1"]
        assert store.broker.summary() == {"active_tasks": 1, "total_tokens_issued": 1, "audit_entries": 4}

    # -- a task's broker fields (lobwife's clients PATCH them) -----------------------------------
    def test_broker_fields_register_renew_and_set_the_count(self, store):
        store.tasks.create(name="x")
        when = "2026-02-16T12:00:00+00:00"
        changed = store.broker.update_task_fields(
            "T1", broker_repos=["minsley/lobmob-vault", "minsley/unity"], broker_status="active",
            broker_registered_at=when, actor="broker/swe")
        assert changed == ("broker_repos", "broker_status", "broker_registered_at")
        data = store.tasks.get("T1").to_dict()
        assert (data["broker_repos"], data["broker_status"], data["broker_registered_at"]) == (
            ["minsley/lobmob-vault", "minsley/unity"], "active", "2026-02-16T12:00:00Z")
        event = store.events.for_task("T1")[-1]
        assert (event.event_type, event.actor) == ("broker_registered", "broker/swe")
        assert store.broker.update_task_fields("T1", broker_status="active") == ("broker_status",)  # renewed
        assert store.broker.get("T1").repos == ("minsley/lobmob-vault", "minsley/unity")
        assert store.broker.update_task_fields("T1", token_count=5, actor="ops") == ("token_count",)
        assert store.tasks.get("T1").token_count == 5
        event = store.events.for_task("T1")[-1]
        assert (event.event_type, event.data["changes"]["token_count"]) == ("broker_updated", {"old": 0, "new": 5})
        assert store.broker.update_task_fields("T1", token_count=5) == ()

    @pytest.mark.parametrize("fields, status", [
        ({"broker_repos": None, "broker_status": None}, "deregistered"),  # lobwife's orphan re-queue
        ({"broker_status": "removed"}, "deregistered"),
        ({"broker_repos": None}, "deregistered"),
        ({"broker_status": "expired"}, "expired"),
    ])
    def test_broker_fields_end_the_registration(self, store, fields, status):
        self.registered(store)
        assert store.broker.update_task_fields("T1", actor="task-manager", **fields) == tuple(fields)
        assert store.tasks.get("T1").broker_status == status
        assert self.events_of(store, "T1")[-1] == "broker_deregistered"
        assert store.broker.update_task_fields("T1", **fields) == ()  # already ended: nothing to do

    @pytest.mark.parametrize("fields, field", [
        ({"broker_repos": ["a/b"], "broker_status": None}, "broker_status"),
        ({"broker_repos": ["a/b"], "broker_status": "expired"}, "broker_status"),
        ({"broker_repos": None, "broker_status": "active"}, "broker_status"),
        ({"broker_repos": "minsley/lobmob"}, "broker_repos"),
        ({"broker_repos": []}, "broker_repos"),
        ({"broker_status": "paused"}, "broker_status"),
        ({"broker_registered_at": "soon"}, "broker_registered_at"),
        ({"token_count": -1}, "token_count"),
        ({"token_count": "5"}, "token_count"),
        ({"broker_repos": None, "broker_registered_at": "2026-02-16T12:00:00Z"}, "broker_registered_at"),
        ({"broker_registered_at": None}, "broker_registered_at"),
        ({"broker_colour": "red"}, "broker_colour"),
    ])
    def test_broker_fields_that_cannot_hold_are_refused_whole(self, store, fields, field):
        self.registered(store)
        before = dump(store)
        with pytest.raises(ValidationError) as exc:
            store.broker.update_task_fields("T1", **fields)
        assert exc.value.field == field and field in exc.value.message
        assert dump(store) == before

    @pytest.mark.parametrize("fields, field", [
        ({"token_count": 3}, "token_count"),
        ({"broker_status": "active"}, "broker_repos"),
        ({"broker_registered_at": "2026-02-16T12:00:00Z"}, "broker_registered_at"),
    ])
    def test_broker_fields_that_need_a_registration(self, store, fields, field):
        store.tasks.create(name="x")
        before = dump(store)
        with pytest.raises(ValidationError) as exc:
            store.broker.update_task_fields("T1", **fields)
        assert exc.value.field == field
        assert dump(store) == before

    # -- service tokens -------------------------------------------------------------------------
    def test_a_service_token_is_for_every_repository_audited_and_reused(self, store, provider):
        token = store.broker.issue_service_token("lobboss")
        assert store.broker.issue_service_token("lobboss") == token
        assert store.broker.issue_service_token("lobsigliere") != token
        assert provider.calls == [None, None]  # None: every repository the App installation reaches
        assert [e.to_dict() | {"timestamp": None} for e in store.broker.audit("lobboss")] == [
            {"timestamp": None, "task_id": "lobboss", "repos": ["*"], "action": "service_token_issued",
             "credential": None}] * 2
        assert store.broker.list() == [] and store.events.latest_id() == 0
        assert "ghs_secret" not in repr(dump(store))

    def test_a_policy_decides_which_services_get_which_repos(self, store, provider):
        from lobstore.broker.service_tokens import ServiceTokenPolicy

        store.set_service_policy(ServiceTokenPolicy({"lobboss": ["minsley/lobmob-vault"], "lobwife": None}))
        store.broker.issue_service_token("lobboss")
        store.broker.issue_service_token("lobwife")
        assert provider.calls == [["minsley/lobmob-vault"], None]
        before = dump(store)
        with pytest.raises(TokenRefusedError) as exc:
            store.broker.issue_service_token("stranger")
        assert (exc.value.reason, exc.value.details["field"]) == ("unknown_service", "service")
        assert dump(store) == before and len(provider.calls) == 2
        with pytest.raises(ConfigurationError):
            ServiceTokenPolicy({"lobboss": "minsley/lobmob-vault"})
        with pytest.raises(ConfigurationError):
            store.set_service_policy({"lobboss": None})

    @pytest.mark.parametrize("service", [None, "", "Has Space", 7, "x" * 65])
    def test_a_malformed_service_name_is_refused(self, store, provider, service):
        with pytest.raises(ValidationError) as exc:
            store.broker.issue_service_token(service)
        assert exc.value.field == "service" and provider.calls == []

    def test_a_service_token_without_a_provider_says_what_to_set(self, store):
        with pytest.raises(NoTokenProviderError, match="not configured.*GH_APP_ID"):
            store.broker.issue_service_token("lobboss")
        assert store.broker.audit() == []

    # -- expiry ---------------------------------------------------------------------------------
    def test_expire_ends_registrations_past_their_time(self, store):
        self.registered(store)
        store.tasks.create(name="later")
        store.broker.register("T2", repos=["a/b"], ttl=timedelta(hours=48))
        assert store.broker.expire() == []
        expired = store.broker.expire(as_of=datetime.now(timezone.utc) + timedelta(hours=25), actor="lobwife")
        assert [r.task_ref for r in expired] == ["T1"] and expired[0].status == "expired"
        assert store.tasks.get("T1").broker_status == "expired"
        assert store.tasks.get("T2").broker_status == "active"
        assert self.audit_actions(store, "T1") == ["task_registered", "registration_expired"]
        event = store.events.for_task("T1")[-1]
        assert (event.event_type, event.data["status"], event.actor) == ("broker_deregistered", "expired", "lobwife")
        assert store.broker.expire(as_of=datetime.now(timezone.utc) + timedelta(hours=25)) == []
        assert [r.task_ref for r in store.broker.list(status="expired")] == ["T1"]
        with pytest.raises(ValidationError):
            store.broker.list(status="gone")
        with pytest.raises(ValidationError) as exc:
            store.broker.expire(as_of="yesterday")
        assert exc.value.field == "as_of"

    # -- tokens ---------------------------------------------------------------------------------
    def test_token_is_issued_counted_and_reused(self, store, provider):
        self.registered(store)
        first = store.broker.issue_token("T1", actor="lobster-swe-t1")
        second = store.broker.issue_token("t1")
        assert first == second and provider.calls == [["minsley/lobmob"]]
        assert first.to_dict()["expires_at"].endswith("Z")
        assert store.tasks.get(1).token_count == 2 and store.broker.get(1).token_count == 2
        assert self.audit_actions(store) == ["task_registered", "token_issued", "token_issued"]
        issued = [e for e in store.events.for_task("T1") if e.event_type == "token_issued"]
        assert [e.data["reused"] for e in issued] == [False, True]

    def test_token_close_to_expiry_is_not_reused(self, store, provider):
        provider.lifetime = timedelta(minutes=4)  # under the 5-minute margin
        self.registered(store)
        first = store.broker.issue_token("T1")
        second = store.broker.issue_token("T1")
        assert first.token != second.token and len(provider.calls) == 2

    def test_concurrent_requests_for_one_task_mint_once(self, store, provider):
        self.registered(store)
        results, errors = [], []

        def work():
            try:
                results.append(store.broker.issue_token("T1").token)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(set(results)) == 1 and len(provider.calls) == 1
        assert store.tasks.get(1).token_count == 6

    def test_token_never_reaches_audit_events_or_log(self, store, provider, caplog):
        caplog.set_level(logging.DEBUG)
        self.registered(store)
        token = store.broker.issue_token("T1")
        assert token.token not in repr(token)
        stored = json.dumps([e.to_dict() for e in store.events.for_task("T1")]) + json.dumps(
            [e.to_dict() for e in store.broker.audit()]) + repr(dump(store))
        assert "ghs_secret" not in stored
        assert "ghs_secret" not in caplog.text

    @pytest.mark.parametrize("setup, reason", [
        ("unknown", "not_registered"),
        ("unregistered", "not_registered"),
        ("deregistered", "deregistered"),
        ("expired", "expired"),
        ("past_expiry", "expired"),
        ("completed", "terminal"),
        ("cancelled", "terminal"),
    ])
    def test_token_refused(self, store, provider, setup, reason):
        if setup == "unregistered":
            store.tasks.create(name="x")
        elif setup != "unknown":
            self.registered(store)
        if setup == "deregistered":
            store.broker.deregister("T1")
        elif setup == "expired":
            store.broker.expire(as_of=datetime.now(timezone.utc) + timedelta(days=2))
        elif setup == "past_expiry":  # time is up but no sweep has recorded it yet
            with store.backend.writing() as conn:
                conn.execute(sa.update(broker_tasks).values(expires_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
        elif setup == "completed":
            store.tasks.update("T1", status="active")
            store.tasks.update("T1", status="completed")
        elif setup == "cancelled":
            store.tasks.cancel("T1")
        before = dump(store)
        with pytest.raises(TokenRefusedError) as exc:
            store.broker.issue_token("T1")
        assert exc.value.reason == reason and exc.value.to_dict()["code"] == "token_refused"
        assert dump(store) == before and provider.calls == []

    def test_no_provider_is_its_own_error(self, store):
        self.registered(store)
        with pytest.raises(NoTokenProviderError, match="GH_APP_ID") as exc:
            store.broker.issue_token("T1")
        assert exc.value.code == "no_token_provider"
        with pytest.raises(ConfigurationError):
            store.set_token_provider(object())

    def test_provider_failure_writes_nothing_and_is_not_cached(self, store, provider):
        self.registered(store)
        before = dump(store)
        provider.error = TokenProviderError("GitHub refused", upstream_status=422, reason="bad repo")
        with pytest.raises(TokenProviderError) as exc:
            store.broker.issue_token("T1")
        assert exc.value.to_dict() == {"error": "GitHub refused", "code": "token_provider_failed",
                                       "upstream_status": 422, "reason": "bad repo"}
        assert dump(store) == before
        provider.error = None
        assert store.broker.issue_token("T1").token == "ghs_secret_2"

    def test_token_inside_a_transaction(self, store, provider):
        self.registered(store)
        with store.transaction() as tx:
            token = tx.broker.issue_token("T1")
            tx.events.add("T1", "note", detail="got a token")
        assert token.token == "ghs_secret_1" and store.tasks.get(1).token_count == 1

    # -- audit ---------------------------------------------------------------------------------
    def test_audit_filters_limits_and_orders(self, store, provider):
        self.registered(store)
        store.tasks.create(name="other")
        store.broker.register("T2", repos=["a/b"])
        store.broker.issue_token("T1")
        assert self.audit_actions(store) == ["task_registered", "task_registered", "token_issued"]
        assert [e.task_ref for e in store.broker.audit("T2")] == ["T2"]
        assert [e.action for e in store.broker.audit(limit=2)] == ["task_registered", "token_issued"]
        # A name that is no task has the entries recorded under it (none here), as lobwife's
        # filter matched the name exactly.
        assert store.broker.audit("T99") == [] and store.broker.audit("no-such-legacy-task") == []
        with pytest.raises(ValidationError):
            store.broker.audit(limit=0)

    # -- jobs ------------------------------------------------------------------------------------
    def test_first_runs_of_a_new_job_at_once_all_count(self, store):
        from store_contract import in_threads

        errors = in_threads(8, lambda n: store.jobs.record_run("nightly", status="success" if n % 2 else "failed"))
        assert errors == []
        job = store.jobs.get("nightly")
        assert (job.run_count, job.fail_count) == (8, 4)

    def test_record_run_creates_and_counts(self, store):
        job = store.jobs.record_run("task-manager", status="success", duration=3.2, output="ok",
                                    finished_at="2026-02-16T10:00:00Z", exit_code=0)
        entry = job.to_dict()
        assert {key: entry[key] for key in UPSTREAM_JOB_KEYS} == {
            "description": None, "schedule": None, "enabled": True, "running": False,
            "last_run": "2026-02-16T10:00:00Z", "last_status": "success", "last_duration": 3.2,
            "run_count": 1, "fail_count": 0, "next_run": None}
        assert (entry["last_output"], entry["last_exit_code"], entry["command"]) == ("ok", 0, None)
        for status in ("failed", "timeout", "error", "interrupted"):
            job = store.jobs.record_run("task-manager", status=status, duration=1)
        assert (job.run_count, job.fail_count, job.last_status, job.last_output) == (5, 4, "interrupted", None)
        # An outside runner that knows when the run began: last_run is the start, as upstream's.
        job = store.jobs.record_run("task-manager", status="success", started_at="2026-02-16T11:00:00Z",
                                    finished_at="2026-02-16T11:00:09Z", duration=9)
        assert job.to_dict()["last_run"] == "2026-02-16T11:00:00Z"
        detail = store.jobs.get("task-manager").to_detail()
        assert detail["name"] == "task-manager" and "last_output" in detail

    def test_output_keeps_the_last_200_lines_with_a_marker(self, store):
        lines = [f"line {n}" for n in range(1, 251)]
        job = store.jobs.record_run("j", status="success", output="\n".join(lines))
        kept = job.last_output.splitlines()
        assert kept[0] == "[… 50 earlier lines truncated …]"
        assert kept[1:] == lines[-MAX_OUTPUT_LINES:]
        exact = "\n".join(lines[:200])
        assert store.jobs.record_run("j", status="success", output=exact).last_output == exact
        assert store.jobs.get("j").last_output == exact

    @pytest.mark.parametrize("kwargs, field", [
        ({"status": "done"}, "status"),
        ({"status": "success", "duration": -1}, "duration"),
        ({"status": "success", "duration": "3s"}, "duration"),
        ({"status": "success", "output": 12}, "output"),
        ({"status": "success", "finished_at": "soon"}, "finished_at"),
        ({"status": "success", "started_at": 5}, "started_at"),
        ({"status": "success", "exit_code": "1"}, "exit_code"),
        ({"status": "success", "exit_code": 256}, "exit_code"),
    ])
    def test_bad_run_is_refused_and_writes_nothing(self, store, kwargs, field):
        with pytest.raises(ValidationError) as exc:
            store.jobs.record_run("j", **kwargs)
        assert exc.value.field == field
        assert store.jobs.list() == {}

    def test_bad_job_name(self, store):
        with pytest.raises(ValidationError) as exc:
            store.jobs.record_run("no spaces/please", status="success")
        assert exc.value.field == "name"

    def test_register_enable_disable_list(self, store):
        store.jobs.record_run("b-job", status="failed")
        job = store.jobs.register("b-job", description="reviews PRs", schedule="*/15 * * * *")
        assert (job.description, job.schedule, job.run_count, job.fail_count) == \
            ("reviews PRs", "*/15 * * * *", 1, 1)
        store.jobs.register("a-job")
        assert list(store.jobs.list()) == ["a-job", "b-job"]
        assert store.jobs.disable("b-job").enabled is False
        assert store.jobs.get("b-job").enabled is False
        assert store.jobs.enable("b-job").enabled is True
        for call in (store.jobs.enable, store.jobs.disable, store.jobs.get):
            with pytest.raises(NotFoundError) as exc:
                call("nope")
            assert exc.value.message == "Unknown job: nope"

    def test_register_sets_enabled_only_for_a_new_job(self, store):
        job = store.jobs.register("j", schedule="* * * * *", command="echo hi", concurrency="allow", timeout=30,
                                  enabled=False)
        assert (job.enabled, job.command, job.concurrency, job.timeout) == (False, "echo hi", "allow", 30.0)
        store.jobs.enable("j")
        job = store.jobs.register("j", schedule="*/2 * * * *", command="echo ho", enabled=False)
        assert (job.enabled, job.schedule, job.command, job.concurrency) == (True, "*/2 * * * *", "echo ho", "allow")
        with pytest.raises(ValidationError) as exc:
            store.jobs.register("j", concurrency="sometimes")
        assert exc.value.field == "concurrency"

    def test_trigger_goes_to_the_runner_of_the_job(self, store):
        store.jobs.record_run("outside", status="success")
        with pytest.raises(NoJobRunnerError) as exc:
            store.jobs.trigger("outside")
        assert exc.value.code == "no_job_runner"
        with pytest.raises(NotFoundError) as exc:
            store.jobs.trigger("nope")
        assert exc.value.message == "Unknown job: nope"
        runner = FakeRunner()
        store.set_job_runner(runner)
        store.jobs.trigger("task-manager")
        assert runner.triggered == ["task-manager"]
        runner.running.add("busy")
        with pytest.raises(JobRunningError) as exc:
            store.jobs.trigger("busy")
        assert isinstance(exc.value, ConflictError) and exc.value.code == "job_running"
        # A job an outside runner records is not this runner's to start.
        with pytest.raises(NoJobRunnerError) as exc:
            store.jobs.trigger("outside")
        assert "not in this server's jobs file" in exc.value.message
        with pytest.raises(NotFoundError):
            store.jobs.trigger("unknown")
        with pytest.raises(ConfigurationError):
            store.set_job_runner("not a runner")
        store.set_job_runner(None)
        with pytest.raises(NoJobRunnerError):
            store.jobs.trigger("outside")

    def test_enabling_schedules_at_once_and_disabling_unschedules(self, store):
        runner = FakeRunner()
        store.set_job_runner(runner)
        store.jobs.register("task-manager", schedule="*/5 * * * *", enabled=False)
        assert store.jobs.get("task-manager").next_run is None
        assert store.jobs.enable("task-manager").next_run == runner.slot
        assert store.jobs.enable("task-manager").next_run == runner.slot  # idempotent
        assert store.jobs.disable("task-manager").next_run is None
        # Jobs of the runner come first, in its order; the others by name.
        store.jobs.register("aaa")
        store.jobs.register("busy")
        assert list(store.jobs.list()) == ["task-manager", "busy", "aaa"]

    def test_a_slot_is_claimed_once(self, store):
        """Two schedulers that saw the same slot: one run counted, and the slot moves on."""
        from store_contract import in_threads

        slot, following = at(12, 5), at(12, 10)
        store.jobs.register("j", schedule="*/5 * * * *")
        assert store.jobs.move_next_run("j", seen=None, next_run=slot)
        assert not store.jobs.move_next_run("j", seen=None, next_run=slot)  # no longer unplanned
        claims = []
        errors = in_threads(8, lambda n: claims.append(
            store.jobs.claim_run("j", started_at=at(12, 5), slot=(slot, following))))
        assert errors == [] and sorted(claims) == [False] * 7 + [True]
        job = store.jobs.get("j")
        assert (job.run_count, job.next_run, job.running_since, job.last_run) == (1, following, at(12, 5), at(12, 5))
        assert store.jobs.running() == ["j"]
        # A disabled job's slot is not claimed.
        store.jobs.disable("j")
        assert not store.jobs.claim_run("j", started_at=at(12, 10), slot=(None, at(12, 15)))

    def test_a_trigger_is_taken_once_and_a_skip_is_counted(self, store):
        store.jobs.register("j")
        store.jobs.request_trigger("j", at(12, 1))
        assert store.jobs.get("j").trigger_requested_at == at(12, 1)
        assert store.jobs.claim_run("j", started_at=at(12, 1), trigger=at(12, 1))
        assert not store.jobs.claim_run("j", started_at=at(12, 1), trigger=at(12, 1))
        store.jobs.request_trigger("j", at(12, 2))
        assert store.jobs.skip_run("j", at=at(12, 2), trigger=at(12, 2))
        job = store.jobs.get("j")
        assert (job.run_count, job.skip_count, job.last_skipped_at, job.trigger_requested_at) == (1, 1, at(12, 2), None)
        with pytest.raises(NotFoundError):
            store.jobs.request_trigger("nope", at(12, 3))

    def test_finishing_and_interrupting_runs(self, store):
        for name in ("a", "b", "c"):
            store.jobs.register(name)
            store.jobs.request_trigger(name, at(12, 0))
            assert store.jobs.claim_run(name, started_at=at(12, 0), trigger=at(12, 0))
        job = store.jobs.finish_run("a", status="failed", duration=1.23456, output="boom\n", exit_code=2)
        assert (job.running, job.last_status, job.last_duration, job.last_exit_code, job.fail_count) == \
            (False, "failed", 1.235, 2, 1)
        assert store.jobs.interrupt_unfinished(at(12, 0, 30), "the runner is gone", keep={"c"}) == ["b"]
        b = store.jobs.get("b")
        assert (b.running, b.last_status, b.last_duration, b.last_output, b.fail_count) == \
            (False, "interrupted", 30.0, "the runner is gone", 1)
        assert store.jobs.running() == ["c"]

    # -- import of lobwife's JSON files ----------------------------------------------------------
    def test_import_of_the_issue_samples(self, store, state_dir):
        report = import_json_state(store, write_state(state_dir))
        job = store.jobs.get("task-manager")
        assert (job.run_count, job.fail_count, job.last_output, job.last_duration) == (42, 1, "ok", 3.2)
        assert job.to_dict()["last_run"] == "2026-02-16T10:00:00Z"
        # test-task-1 names no task of the store: kept standalone under its key, as lobwife kept it.
        assert store.tasks.count() == 0
        (registration,) = store.broker.list()
        assert registration.to_dict() == {
            "task_id": "test-task-1", "repos": ["minsley/lobmob"], "lobster_type": "swe",
            "registered_at": "2026-02-16T10:00:00Z", "expires_at": "2026-02-17T10:00:00Z",
            "status": "active", "token_count": 3, "standalone": True}
        assert [e.to_dict() for e in store.broker.audit()] == [
            {"timestamp": "2026-02-16T10:00:00Z", "task_id": "test-task-1", "repos": ["minsley/lobmob"],
             "action": "task_registered", "credential": None}]
        assert [e.to_dict()["task_id"] for e in store.broker.audit("test-task-1")] == ["test-task-1"]
        assert report.standalone == ["test-task-1"] and report.audit_imported == 1
        assert sorted(p.name for p in state_dir.iterdir()) == [
            "jobs.json.migrated", "tasks.json.migrated", "token-audit.json.migrated"]

    def test_import_twice_changes_nothing(self, store, state_dir):
        import_json_state(store, write_state(state_dir), keep=True)
        before = dump(store)
        report = import_json_state(store, state_dir, keep=True)
        assert dump(store) == before
        assert not report.changed
        assert (report.jobs_skipped, report.registrations_skipped, report.audit_skipped) == \
            (["task-manager"], ["test-task-1"], 1)
        assert "nothing new" in report.format_text()

    def test_import_attaches_to_an_existing_task_and_links_audit(self, store, state_dir):
        store.tasks.create(name="From the vault", legacy_id="test-task-1", status="active")
        audit = SAMPLE_AUDIT + [{"timestamp": "2026-02-16T11:00:00Z", "task_id": "gone-task",
                                 "repos": ["a/b"], "action": "task_deregistered"}]
        report = import_json_state(store, write_state(state_dir, audit=audit))
        assert report.standalone == [] and store.tasks.count() == 1
        assert store.tasks.get("T1").broker_status == "active"
        assert self.events_of(store, "T1")[-1] == "broker_registered"
        assert [e.task_ref for e in store.broker.audit()] == ["T1", "gone-task"]
        assert [e.action for e in store.broker.audit("gone-task")] == ["task_deregistered"]

    def test_import_keeps_genuine_repeats_once(self, store, state_dir):
        write_state(state_dir, jobs=None, tasks=None, audit=SAMPLE_AUDIT * 2)
        assert import_json_state(store, state_dir, keep=True).audit_imported == 2
        assert import_json_state(store, state_dir, keep=True).audit_imported == 0
        assert len(store.broker.audit()) == 2

    def test_import_leaves_the_stores_newer_job_state(self, store, state_dir):
        store.jobs.record_run("task-manager", status="failed")
        report = import_json_state(store, write_state(state_dir))
        assert report.jobs_skipped == ["task-manager"]
        assert store.jobs.get("task-manager").run_count == 1

    def test_missing_files_are_reported(self, store, state_dir):
        report = import_json_state(store, write_state(state_dir, tasks=None, audit=None))
        assert report.missing == ["tasks.json", "token-audit.json"]
        assert report.renamed == ["jobs.json -> jobs.json.migrated"]
        empty = state_dir / "empty"
        empty.mkdir()
        report = import_json_state(store, empty)
        assert len(report.missing) == 3 and not report.changed
        with pytest.raises(ValidationError, match="not a folder"):
            import_json_state(store, state_dir / "nope")

    @pytest.mark.parametrize("files, name, message", [
        ({"jobs": "{not json"}, "jobs.json", "cannot be read as JSON"),
        ({"jobs": "[]"}, "jobs.json", "must hold an object keyed by name"),
        ({"jobs": {"j": {"run_count": -1}}}, "jobs.json", "entry 'j': run_count"),
        ({"jobs": {"j": {"last_status": "great"}}}, "jobs.json", "last_status"),
        ({"jobs": {"bad name": {}}}, "jobs.json", "job name"),
        ({"tasks": {"t": {"repos": "minsley/lobmob", "registered_at": "2026-02-16T10:00:00Z"}}},
         "tasks.json", "entry 't': repos must be a list"),
        ({"tasks": {"t": {"repos": ["a/b"]}}}, "tasks.json", "registered_at is required"),
        ({"tasks": {"t": {"repos": ["a/b"], "registered_at": "2026-02-16T10:00:00Z", "status": "odd"}}},
         "tasks.json", "status"),
        ({"tasks": {"t": ["a/b"]}}, "tasks.json", "must be an object"),
        ({"audit": {"not": "a list"}}, "token-audit.json", "must hold a list"),
        ({"audit": [{"task_id": "t", "action": "task_registered"}]}, "token-audit.json", "timestamp is required"),
        ({"audit": [{"timestamp": "then", "task_id": "t", "action": "x"}]}, "token-audit.json", "entry 0: timestamp"),
    ])
    def test_malformed_file_names_it_and_changes_nothing(self, store, state_dir, files, name, message):
        write_state(state_dir, **{"jobs": SAMPLE_JOBS, "tasks": SAMPLE_TASKS, "audit": SAMPLE_AUDIT, **files})
        before = dump(store)
        with pytest.raises(ValidationError, match=message) as exc:
            import_json_state(store, state_dir)
        assert name in exc.value.message and exc.value.details["file"].endswith(name)
        assert dump(store) == before
        assert sorted(p.name for p in state_dir.iterdir()) == ["jobs.json", "tasks.json", "token-audit.json"]

    def test_unknown_fields_are_reported_not_fatal(self, store, state_dir):
        jobs = {"task-manager": {**SAMPLE_JOBS["task-manager"], "next_run": "2026-02-16T11:00:00Z"}}
        report = import_json_state(store, write_state(state_dir, jobs=jobs))
        assert report.ignored_fields == ["jobs.json: task-manager.next_run"]

    def test_dry_run_changes_nothing(self, store, state_dir):
        before = dump(store)
        report = import_json_state(store, write_state(state_dir), dry_run=True)
        assert report.dry_run and report.jobs_imported == ["task-manager"] and report.standalone
        assert dump(store) == before
        assert sorted(p.name for p in state_dir.iterdir()) == ["jobs.json", "tasks.json", "token-audit.json"]

    def test_failed_import_rolls_back_and_keeps_the_files(self, store, state_dir):
        store.tasks.create(name="From the vault", legacy_id="test-task-1", status="active")
        break_event_inserts(store, "broker_registered")
        before = dump(store)
        with pytest.raises(Exception):
            import_json_state(store, write_state(state_dir))
        assert dump(store) == before
        assert sorted(p.name for p in state_dir.iterdir()) == ["jobs.json", "tasks.json", "token-audit.json"]

    def test_rename_never_overwrites_an_earlier_copy(self, store, state_dir):
        write_state(state_dir, tasks=None, audit=None)
        (state_dir / "jobs.json.migrated").write_text("earlier")
        report = import_json_state(store, state_dir)
        assert report.renamed == ["jobs.json -> jobs.json.migrated.2"]
        assert (state_dir / "jobs.json.migrated").read_text() == "earlier"
