"""Duty locks: one process per database does a duty; the others stand by and take over."""

from __future__ import annotations

import logging
import os
import threading

import pytest
import sqlalchemy as sa

from lobstore import open_store
from lobstore.duties import AdvisoryLockDuty, DutyGate, DutyState, FileDuty, LocalDuty, duty_for

WAIT_SECONDS = 10.0  # a deadline for a failure, never a timing assertion


def test_each_store_gets_the_lock_that_fits_it(sqlite_file_url, tmp_path):
    with open_store("sqlite://") as memory, open_store(sqlite_file_url) as file:
        assert isinstance(duty_for(memory, "jobs"), LocalDuty)
        duty = duty_for(file, "jobs")
        assert isinstance(duty, FileDuty) and duty.path == (tmp_path / "lobstore.db.jobs.lock").resolve()


def test_a_file_duty_is_held_by_one_holder_at_a_time(sqlite_file_url):
    with open_store(sqlite_file_url) as store:
        one, two = duty_for(store, "jobs"), duty_for(store, "jobs")
        assert one.try_acquire() and one.try_acquire()  # again: still ours
        assert not two.try_acquire() and not two.held()
        assert two.holder().startswith(f"pid {os.getpid()} on ")
        one.release()
        assert not one.held() and two.try_acquire() and two.held()
        assert not duty_for(store, "sync").held() and duty_for(store, "sync").try_acquire()  # another duty
        two.release()


def test_a_replaced_lock_file_is_given_up(sqlite_file_url):
    with open_store(sqlite_file_url) as store:
        duty = duty_for(store, "jobs")
        assert duty.try_acquire()
        duty.path.unlink()
        assert not duty.held()
        assert duty.try_acquire()  # a fresh file, locked anew
        duty.release()


def test_a_process_duty_is_held_once_per_store():
    with open_store("sqlite://") as store, open_store("sqlite://") as other:
        one, two = duty_for(store, "jobs"), duty_for(store, "jobs")
        assert one.try_acquire() and not two.try_acquire()
        assert duty_for(other, "jobs").try_acquire()  # another database
        one.release()
        assert two.try_acquire()


def test_the_gate_says_what_changes(sqlite_file_url, caplog):
    caplog.set_level(logging.INFO, logger="lobstore.duties")
    with open_store(sqlite_file_url) as store:
        leader, follower = DutyGate(duty_for(store, "jobs"), "the schedule"), DutyGate(duty_for(store, "jobs"), "the schedule")
        assert leader.poll() is DutyState.ACQUIRED and leader.poll() is DutyState.HELD
        assert follower.poll() is DutyState.STANDBY and follower.poll() is DutyState.STANDBY
        standby = [r.message for r in caplog.records if "stands by" in r.message]
        assert len(standby) == 1 and f"pid {os.getpid()}" in standby[0]  # said once
        leader.duty.path.unlink()  # someone removed the lock file
        assert leader.poll() is DutyState.LOST
        assert follower.poll() is DutyState.ACQUIRED
        assert any("taking over here" in r.message for r in caplog.records)
        assert any("lost duty 'jobs'" in r.message for r in caplog.records)
        follower.release()
        leader.release()


@pytest.fixture
def pg_store(postgres_url):
    with open_store(postgres_url) as store:
        yield store


def test_a_postgresql_duty_is_one_advisory_lock(pg_store, postgres_url):
    one, two = duty_for(pg_store, "jobs"), duty_for(pg_store, "jobs")
    assert isinstance(one, AdvisoryLockDuty)
    try:
        assert one.try_acquire() and one.held() and one.try_acquire()
        assert not two.try_acquire() and not two.held()
        holder = two.holder()
        assert f"lobstore jobs duty, pid {os.getpid()}" in holder
        with pg_store.backend.reading() as conn:  # held by a session that is not in the store's pool
            count = conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                         "AND pid <> pg_backend_pid()")).scalar()
        assert count >= 1
        one.release()
        assert two.try_acquire()
    finally:
        one.release()
        two.release()


def test_when_the_holders_session_ends_the_other_takes_over(pg_store):
    held = duty_for(pg_store, "jobs")
    leader, follower = DutyGate(held, "x"), DutyGate(duty_for(pg_store, "jobs"), "x")
    try:
        assert leader.poll() is DutyState.ACQUIRED and follower.poll() is DutyState.STANDBY
        # The holder's connection dies (its process was killed, the network failed). Only this
        # duty's session: other tests may hold a jobs duty of their own on the same server.
        key = held.describe()["key"]
        with pg_store.backend.writing() as conn:
            ended = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 1 AND classid = :high AND objid = :low "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).scalars().all()
        assert ended == [True]
        assert leader.poll() is DutyState.LOST
        assert follower.poll() is DutyState.ACQUIRED
        assert leader.poll() is DutyState.STANDBY
    finally:
        leader.release()
        follower.release()


def test_two_stores_in_one_postgresql_database_do_not_share_a_duty(pg_store, postgres_url):
    server, _, _ = postgres_url.partition("?")
    admin = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql('CREATE SCHEMA IF NOT EXISTS "lobstore_duty_other"')
    try:
        with open_store(f"{server}?options=-csearch_path%3Dlobstore_duty_other") as other:
            one, two = duty_for(pg_store, "jobs"), duty_for(other, "jobs")
            try:
                assert one.try_acquire() and two.try_acquire()
            finally:
                one.release()
                two.release()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql('DROP SCHEMA "lobstore_duty_other" CASCADE')
        admin.dispose()


def test_an_unreachable_database_means_standby_not_a_crash():
    duty = AdvisoryLockDuty("jobs", sa.engine.make_url("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    assert duty.try_acquire() is False and duty.held() is False
    assert duty.holder() is None
    duty.release()


def test_a_gate_says_it_has_looked_only_once_its_first_try_has_an_answer():
    """While the first try is under way (a PostgreSQL connection being made), nobody knows
    who holds the duty: a service must not call itself a standby then (a sync trigger would
    be answered "another replica runs it")."""
    started, answer = threading.Event(), threading.Event()

    class SlowDuty:
        name, kind = "slow", "test"

        def try_acquire(self):
            started.set()
            answer.wait(WAIT_SECONDS)
            return True

    gate = DutyGate(SlowDuty(), "x")
    polling = threading.Thread(target=gate.poll)
    polling.start()
    assert started.wait(WAIT_SECONDS)
    assert gate.polled is False and gate.holding is False
    answer.set()
    polling.join(WAIT_SECONDS)
    assert gate.polled is True and gate.holding is True
