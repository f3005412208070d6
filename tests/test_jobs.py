"""The job scheduler (issue 13): real child processes, a fake clock where time matters.

A job that must stay alive for a while waits for a file to appear (``hold``), so a test decides
when it ends without sleeping. Schedulers are driven one pass at a time (``run_now``) at the
fake clock's time; the runs themselves are real processes on the real clock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("croniter")

from lobstore import open_store  # noqa: E402
from lobstore.cron import JobScheduler, load_jobs, parse_jobs  # noqa: E402
from lobstore.errors import ConfigurationError, JobRunningError  # noqa: E402
from lobstore.repositories.jobs import MAX_OUTPUT_LINES  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "jobs.toml"
T0 = datetime(2026, 3, 1, 12, 4, 30, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, hour: int, minute: int, second: int = 0) -> Clock:
        self.now = self.now.replace(hour=hour, minute=minute, second=second)
        return self


def moment(hour: int, minute: int, second: int = 0) -> datetime:
    return T0.replace(hour=hour, minute=minute, second=second)


def wait_until(predicate, timeout: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def process_state(pid: int) -> str:
    """'gone', 'Z' (dead, waiting to be reaped by whoever adopted it) or a live state."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def dead(pid: int) -> bool:
    return process_state(pid) in ("gone", "Z", "X")


def hold(folder: Path, name: str = "release") -> str:
    """A shell fragment that waits until ``folder/name`` exists."""
    return f"while [ ! -e '{folder / name}' ]; do sleep 0.02; done"


@pytest.fixture
def store(db_url):
    with open_store(db_url) as store:
        yield store


@pytest.fixture
def schedulers():
    """Make schedulers (``schedulers(store, jobs, **options)``); each is stopped at the end."""
    made: list[JobScheduler] = []

    def make(store, jobs, **options):
        options.setdefault("stop_grace", 5)
        scheduler = JobScheduler(store, parse_jobs({"jobs": jobs}) if isinstance(jobs, dict) else jobs, **options)
        scheduler.on_start()
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop(timeout=5)


# -- the jobs file -------------------------------------------------------------------------------
def test_the_example_reproduces_upstreams_four_jobs():
    jobs = load_jobs(EXAMPLE)
    assert [(job.name, job.schedule.expression, job.description, job.concurrency, job.timeout) for job in jobs.jobs] == [
        ("task-manager", "*/5 * * * *", "Task assignment, timeout detection, orphan recovery", "forbid", 300.0),
        ("review-prs", "*/2 * * * *", "Deterministic PR validation and auto-merge", "forbid", 300.0),
        ("status-reporter", "*/30 * * * *", "Fleet summary posted to Discord", "forbid", 300.0),
        ("flush-logs", "*/30 * * * *", "Flush event logs to vault", "forbid", 300.0),
    ]
    task_manager = jobs.jobs[0]
    assert task_manager.argv == ["python3", "/opt/lobmob/scripts/server/lobmob-task-manager.py"]
    assert task_manager.env["PATH"] == f"/opt/lobmob/scripts/server:/opt/lobmob/scripts:{os.environ['PATH']}"
    assert (task_manager.env["LOBMOB_RUNTIME"], task_manager.env["LOG_DIR"]) == ("k8s", "/tmp")
    assert (jobs.catch_up_window, jobs.stop_grace) == (60.0, 20.0)


def test_a_jobs_file_with_everything(tmp_path):
    (tmp_path / "work").mkdir()
    path = tmp_path / "jobs.toml"
    path.write_text(
        '[defaults]\ntimeout = 30\nenv = { A = "1", B = "x" }\n'
        '[jobs.one]\ncommand = "echo $A"\nschedule = "0  3 * * 1-5"\nconcurrency = "allow"\n'
        'env = { B = "${HOME}/y", C = "$$literal" }\nworking_dir = "work"\nenabled = false\ntimeout = 5.5\n'
        '[jobs.two]\ncommand = ["printf", \'%s\\n\', "a b"]\nschedule = "*/2 * * * *"\ndescription = "two"\n'
    )
    one, two = load_jobs(path, environ={"HOME": "/home/lob"}).jobs
    assert one.argv == ["/bin/sh", "-c", "echo $A"] and one.command_line == "echo $A"
    assert (one.schedule.expression, one.concurrency, one.timeout, one.enabled) == ("0 3 * * 1-5", "allow", 5.5, False)
    assert dict(one.env) == {"A": "1", "B": "/home/lob/y", "C": "$literal"}
    assert one.working_dir == (tmp_path / "work").resolve()
    assert two.command_line == "printf '%s\\n' 'a b'" and two.working_dir == tmp_path.resolve()
    assert (two.timeout, two.concurrency, two.enabled, two.description) == (30.0, "forbid", True, "two")


@pytest.mark.parametrize("text, job, field, words", [
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\nretries = 3\n', "a", "retries", "unknown field"),
    ('[jobs.a]\ncommand = "x"\nschedule = "*/5 * * *"\n', "a", "schedule", "5-field"),
    ('[jobs.a]\ncommand = "x"\nschedule = "61 * * * *"\n', "a", "schedule", "out of range"),
    ('[jobs.a]\ncommand = "x"\nschedule = "0 0 30 2 *"\n', "a", "schedule", "never matches"),
    ('[jobs.a]\nschedule = "* * * * *"\n', "a", "command", "is required"),
    ('[jobs.a]\ncommand = []\nschedule = "* * * * *"\n', "a", "command", "empty list"),
    ('[jobs.a]\ncommand = ["x", 1]\nschedule = "* * * * *"\n', "a", "command", "list of strings"),
    ('[jobs.a]\ncommand = "x"\n', "a", "schedule", "is required"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\nconcurrency = "replace"\n', "a", "concurrency", "forbid, allow"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\ntimeout = 0\n', "a", "timeout", "above 0"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\ntimeout = "5m"\n', "a", "timeout", "number of seconds"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\nenv = { X = "${NOPE_NOT_SET}" }\n', "a", "env", "NOPE_NOT_SET"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\nenv = { X = 5 }\n', "a", "env", "must be a string"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\nworking_dir = "nowhere"\n', "a", "working_dir", "not a folder"),
    ('[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\nenabled = "yes"\n', "a", "enabled", "true or false"),
    ('[jobs."bad name"]\ncommand = "x"\nschedule = "* * * * *"\n', "bad name", None, "job name"),
    ('[defaults]\nschedule = "* * * * *"\n[jobs.a]\ncommand = "x"\n', None, "defaults.schedule", "unknown field"),
    ('[scheduler]\ncatch_up_window = -1\n[jobs.a]\ncommand = "x"\nschedule = "* * * * *"\n', None,
     "scheduler.catch_up_window", "at most"),
    ('[job.a]\ncommand = "x"\n', None, "job", "unknown field"),
    ('[scheduler]\n', None, "jobs", "is missing"),
    ('jobs = {}\n', None, "jobs", "no jobs defined"),
    ('[jobs.a\n', None, None, "not valid TOML"),
])
def test_a_bad_jobs_file_is_refused_naming_file_job_and_field(tmp_path, text, job, field, words):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as exc:
        load_jobs(path, environ={})
    message = str(exc.value)
    assert message.startswith(f"jobs file {path}") and words in message
    if job:
        assert f"job {job!r}" in message
    if field:
        assert f": {field}:" in message


def test_a_missing_jobs_file_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match=f"jobs file {tmp_path / 'none.toml'}: no such file"):
        load_jobs(tmp_path / "none.toml")


# -- running on schedule -------------------------------------------------------------------------
def test_a_job_runs_on_its_schedule_and_its_run_is_recorded(store, schedulers, tmp_path):
    clock = Clock()
    scheduler = schedulers(store, {
        "hello": {"command": "echo hello from $LOBSTORE_JOB; echo oops >&2; pwd", "schedule": "*/5 * * * *",
                  "description": "says hello", "working_dir": str(tmp_path)},
        "broken": {"command": ["sh", "-c", "echo broken; exit 3"], "schedule": "*/5 * * * *"},
    }, now=clock)
    scheduler.run_now()
    hello = store.jobs.get("hello")  # known before its first run, with its next slot
    assert (hello.run_count, hello.next_run, hello.command, hello.description) == \
        (0, moment(12, 5), "echo hello from $LOBSTORE_JOB; echo oops >&2; pwd", "says hello")
    clock.at(12, 4, 59)
    scheduler.run_now()
    assert scheduler.runs_started == 0
    clock.at(12, 5, 0)
    scheduler.run_now()
    assert scheduler.runs_started == 2
    assert scheduler.wait_idle(10)
    hello = store.jobs.get("hello")
    assert (hello.last_status, hello.last_exit_code, hello.run_count, hello.fail_count) == ("success", 0, 1, 0)
    assert hello.last_output == f"hello from hello\noops\n{tmp_path.resolve()}"
    assert (hello.last_run, hello.next_run, hello.running) == (moment(12, 5), moment(12, 10), False)
    assert 0 <= hello.last_duration < 5
    broken = store.jobs.get("broken")
    assert (broken.last_status, broken.last_exit_code, broken.fail_count, broken.last_output) == ("failed", 3, 1, "broken")
    clock.at(12, 5, 30)
    scheduler.run_now()  # the same slot does not run twice
    assert scheduler.runs_started == 2


def test_a_command_that_cannot_start_is_an_error_run(store, schedulers):
    clock = Clock()
    scheduler = schedulers(store, {"ghost": {"command": ["/no/such/program"], "schedule": "* * * * *"}}, now=clock)
    scheduler.run_now()
    clock.at(12, 5)
    scheduler.run_now()
    assert scheduler.wait_idle(10)
    ghost = store.jobs.get("ghost")
    assert (ghost.last_status, ghost.fail_count, ghost.last_exit_code) == ("error", 1, None)
    assert "cannot start '/no/such/program'" in ghost.last_output and "No such file" in ghost.last_output


def test_forbid_skips_a_slot_while_the_last_run_is_alive_and_allow_runs_both(store, schedulers, tmp_path):
    clock = Clock()
    scheduler = schedulers(store, {
        "single": {"command": hold(tmp_path), "schedule": "* * * * *"},
        "double": {"command": hold(tmp_path), "schedule": "* * * * *", "concurrency": "allow"},
    }, now=clock)
    scheduler.run_now()
    clock.at(12, 5)
    scheduler.run_now()
    assert sorted(store.jobs.running()) == ["double", "single"]
    clock.at(12, 6)
    scheduler.run_now()
    single, double = store.jobs.get("single"), store.jobs.get("double")
    assert (single.run_count, single.skip_count, single.last_skipped_at) == (1, 1, clock.now)
    assert (double.run_count, double.skip_count) == (2, 0)
    assert double.running_since == moment(12, 5)  # the older of its two runs
    assert single.next_run == double.next_run == moment(12, 7)
    (tmp_path / "release").touch()
    assert scheduler.wait_idle(10)
    single, double = store.jobs.get("single"), store.jobs.get("double")
    assert (single.running, single.last_status, single.run_count) == (False, "success", 1)
    assert (double.running, double.last_status, double.run_count) == (False, "success", 2)


def test_a_timeout_kills_the_whole_process_group(store, schedulers, tmp_path):
    clock = Clock()
    pids = tmp_path / "pids"
    command = f"sleep 60 & echo $! > '{pids}'; echo started; sleep 60"
    scheduler = schedulers(store, {"stuck": {"command": command, "schedule": "* * * * *", "timeout": 1}}, now=clock)
    scheduler.run_now()
    clock.at(12, 5)
    began = time.monotonic()
    scheduler.run_now()
    assert scheduler.wait_idle(15)
    assert time.monotonic() - began < 10
    stuck = store.jobs.get("stuck")
    assert (stuck.last_status, stuck.last_exit_code, stuck.fail_count) == ("timeout", -9, 1)
    assert stuck.last_output == "started\n[timed out after 1 s: its process group was killed]"
    assert 1 <= stuck.last_duration < 5
    grandchild = int(pids.read_text())
    wait_until(lambda: dead(grandchild), what=f"the background sleep {grandchild} to die")


def test_what_a_run_leaves_behind_in_its_group_ends_with_it(store, schedulers, tmp_path):
    clock = Clock()
    pids = tmp_path / "pids"
    scheduler = schedulers(store, {"leaky": {"command": f"sleep 60 & echo $! > '{pids}'", "schedule": "* * * * *"}},
                           now=clock)
    scheduler.run_now()
    clock.at(12, 5)
    scheduler.run_now()
    assert scheduler.wait_idle(10)
    assert store.jobs.get("leaky").last_status == "success"
    grandchild = int(pids.read_text())
    wait_until(lambda: dead(grandchild), what="the left-behind sleep to die")


def test_the_output_tail_is_200_lines(store, schedulers):
    clock = Clock()
    scheduler = schedulers(store, {
        "chatty": {"command": "seq 1 1000", "schedule": "* * * * *"},
        # 20 MB in long lines: memory stays bounded, the tail is still whole lines.
        "flood": {"command": [sys.executable, "-c", "import sys\nfor n in range(20000): "
                              "sys.stdout.write(str(n) + ' ' + 'x' * 1000 + '\\n')"], "schedule": "* * * * *"},
    }, now=clock)
    scheduler.run_now()
    clock.at(12, 5)
    scheduler.run_now()
    assert scheduler.wait_idle(30)
    lines = store.jobs.get("chatty").last_output.splitlines()
    assert lines[0] == "[… 800 earlier lines truncated …]"
    assert lines[1:] == [str(n) for n in range(801, 1001)] and len(lines) == MAX_OUTPUT_LINES + 1
    flood = store.jobs.get("flood").last_output.splitlines()
    assert flood[0].startswith("[… ") and flood[-1] == "19999 " + "x" * 1000
    assert all(line.split(" ")[1] == "x" * 1000 for line in flood[1:])
    assert int(flood[0].split()[1]) + len(flood) - 1 == 20000  # every line is counted


def test_binary_output_is_stored_safely_and_served_as_json(store, schedulers):
    from lobstore.adapters.http import make_app
    from wsgi_client import WsgiClient

    clock = Clock()
    noise = "import os, sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe nul \\x00 half \\xed\\xa0\\x80 \\xe2\\x82 end\\n'" \
            " + os.urandom(4096) + b'\\nlast line\\n')"
    scheduler = schedulers(store, {"noisy": {"command": [sys.executable, "-c", noise], "schedule": "* * * * *"}},
                           now=clock)
    scheduler.run_now()
    clock.at(12, 5)
    scheduler.run_now()
    assert scheduler.wait_idle(10)
    output = store.jobs.get("noisy").last_output
    assert output.startswith("ok \ufffd\ufffd nul \ufffd half \ufffd") and output.endswith("\nlast line")
    output.encode("utf-8")  # no lone surrogate: it is valid text
    assert "\x00" not in output
    response = WsgiClient(make_app(store)).get("/api/jobs/noisy")
    assert response.status == 200
    assert json.loads(response.body.decode("utf-8"))["last_output"] == output


# -- missed slots --------------------------------------------------------------------------------
def test_a_restart_within_the_catch_up_window_runs_a_missed_slot_once(db_url, schedulers, tmp_path):
    jobs = {"tick": {"command": "echo tick", "schedule": "*/5 * * * *"}}
    with open_store(db_url) as store:
        first = schedulers(store, jobs, now=Clock())
        first.run_now()  # plans 12:05
        first.stop()
        assert store.jobs.get("tick").next_run == moment(12, 5)
        # Down across 12:05; back 40 s later.
        clock = Clock().at(12, 5, 40)
        second = schedulers(store, jobs, now=clock)
        second.run_now()
        assert second.wait_idle(10) and second.runs_started == 1
        tick = store.jobs.get("tick")
        assert (tick.run_count, tick.last_run, tick.next_run) == (1, clock.now, moment(12, 10))
        second.run_now()
        clock.at(12, 5, 50)
        second.run_now()
        assert second.runs_started == 1 and store.jobs.get("tick").run_count == 1
        second.stop()
        # Down across 12:10 and 12:15, back 20 s after the last: one run for both.
        third = schedulers(store, jobs, now=Clock().at(12, 15, 20))
        third.run_now()
        assert third.wait_idle(10) and third.runs_started == 1 and store.jobs.get("tick").run_count == 2
        third.stop()
        # Down across 12:20 and back two minutes later: too late, the slot is passed by.
        fourth = schedulers(store, jobs, now=Clock().at(12, 22))
        fourth.run_now()
        assert fourth.runs_started == 0
        tick = store.jobs.get("tick")
        assert (tick.run_count, tick.next_run) == (2, moment(12, 25))


def test_a_changed_schedule_is_planned_anew(store, schedulers):
    clock = Clock()
    schedulers(store, {"j": {"command": "true", "schedule": "0 * * * *"}}, now=clock).run_now()
    assert store.jobs.get("j").next_run == moment(13, 0)
    clock.at(12, 4, 30)
    schedulers(store, {"j": {"command": "true", "schedule": "*/5 * * * *"}}, now=clock)
    job = store.jobs.get("j")
    assert (job.schedule, job.next_run) == ("*/5 * * * *", moment(12, 5))


# -- enable, disable, trigger --------------------------------------------------------------------
def test_disabled_jobs_do_not_run_but_a_trigger_does(store, schedulers, tmp_path):
    clock = Clock()
    scheduler = schedulers(store, {"j": {"command": "echo ran", "schedule": "* * * * *", "enabled": False}}, now=clock)
    store.set_job_runner(scheduler)
    scheduler.run_now()
    assert store.jobs.get("j").next_run is None
    clock.at(12, 5)
    scheduler.run_now()
    assert scheduler.runs_started == 0
    store.jobs.trigger("j")
    assert store.jobs.get("j").trigger_requested_at == clock.now
    scheduler.run_now()
    assert scheduler.wait_idle(10) and store.jobs.get("j").run_count == 1
    assert store.jobs.get("j").trigger_requested_at is None
    assert store.jobs.enable("j").next_run == moment(12, 6)  # scheduled at once
    # The file's "enabled = false" was the first value only: the stored state wins on restart.
    again = schedulers(store, {"j": {"command": "echo ran", "schedule": "* * * * *", "enabled": False}}, now=clock)
    assert again.register_jobs()["j"].enabled is True
    assert store.jobs.disable("j").next_run is None


def test_a_trigger_while_a_forbid_job_runs_is_refused(store, schedulers, tmp_path):
    clock = Clock()
    scheduler = schedulers(store, {"j": {"command": hold(tmp_path), "schedule": "0 0 1 1 *"}}, now=clock)
    store.set_job_runner(scheduler)
    scheduler.run_now()
    store.jobs.trigger("j")
    scheduler.run_now()
    assert store.jobs.running() == ["j"] and scheduler.running_jobs() == ["j"]
    with pytest.raises(JobRunningError, match="Job j is already running"):
        store.jobs.trigger("j")
    (tmp_path / "release").touch()
    assert scheduler.wait_idle(10)
    assert (store.jobs.get("j").run_count, store.jobs.running()) == (1, [])


# -- stopping and taking over ---------------------------------------------------------------------
def test_stop_waits_for_a_run_then_kills_its_group_and_records_interrupted(store, schedulers, tmp_path):
    clock = Clock()
    pids = tmp_path / "pids"
    command = f"trap '' TERM; sleep 60 & echo $$ $! > '{pids}'; echo working; wait"
    quick = f"{hold(tmp_path)}; echo finished"
    scheduler = schedulers(store, {"slow": {"command": command, "schedule": "0 0 1 1 *"},
                                   "quick": {"command": quick, "schedule": "0 0 1 1 *"}},
                           now=clock, stop_grace=1)
    store.set_job_runner(scheduler)
    scheduler.run_now()
    store.jobs.trigger("slow")
    store.jobs.trigger("quick")
    scheduler.run_now()
    shell, sleeper = map(int, wait_until(lambda: pids.exists() and pids.read_text().split(), what="the pid file"))
    (tmp_path / "release").touch()  # "quick" ends within the grace
    began = time.monotonic()
    assert scheduler.stop(timeout=5)
    assert 1 <= time.monotonic() - began < 8
    slow, quick_state = store.jobs.get("slow"), store.jobs.get("quick")
    assert (slow.last_status, slow.running, slow.fail_count) == ("interrupted", False, 1)
    assert slow.last_output.startswith("working\n[interrupted: lobstore serve stopped")
    assert (quick_state.last_status, quick_state.last_output) == ("success", "finished")
    wait_until(lambda: dead(shell) and dead(sleeper), what="the job's processes to die")
    assert not scheduler.leading


def test_one_scheduler_per_database_and_the_other_takes_over(db_url, schedulers, tmp_path):
    """Two schedulers (two stores: two engines, as two processes have) on one database."""
    jobs = {"j": {"command": "echo $LOBSTORE_JOB", "schedule": "* * * * *"}}
    clock = Clock()
    with open_store(db_url) as one, open_store(db_url) as two:
        first = schedulers(one, jobs, now=clock)
        second = schedulers(two, jobs, now=clock)
        first.run_now()
        second.run_now()
        assert (first.leading, second.leading) == (True, False)
        assert first.health()["role"] == "leader" and second.health()["role"] == "standby"
        assert first.health()["jobs"] == ["j"] and first.health()["jobs_running"] == []
        clock.at(12, 5)
        for _ in range(3):
            second.run_now()
            first.run_now()
        assert first.wait_idle(10)
        assert (first.runs_started, second.runs_started, one.jobs.get("j").run_count) == (1, 0, 1)
        # The leader dies in the middle of a run: its duty goes, its run is still marked.
        one.jobs.request_trigger("j", clock.now)
        assert one.jobs.claim_run("j", started_at=clock.now, trigger=clock.now)
        first.gate.release()  # what its process ending does to the lock
        clock.at(12, 5, 30)
        second.run_now()
        assert second.leading
        j = two.jobs.get("j")
        assert (j.running, j.last_status, j.run_count, j.fail_count) == (False, "interrupted", 2, 1)
        clock.at(12, 6)
        second.run_now()
        assert second.wait_idle(10) and second.runs_started == 1 and two.jobs.get("j").run_count == 3


def test_a_claimed_slot_runs_once_even_if_two_schedulers_lead(store, schedulers, tmp_path):
    """The store's claim is the last guard: two schedulers that both hold "a" duty (here:
    separate in-process locks) still run one slot once."""
    from lobstore.duties import LocalDuty

    class Scope:
        pass

    jobs = {"j": {"command": "true", "schedule": "* * * * *"}}
    clock = Clock()
    scope_a, scope_b = Scope(), Scope()
    a = schedulers(store, jobs, now=clock, duty=LocalDuty("jobs", scope_a))
    b = schedulers(store, jobs, now=clock, duty=LocalDuty("jobs", scope_b))
    a.run_now()
    b.run_now()
    assert a.leading and b.leading
    clock.at(12, 5)
    a.run_now()
    b.run_now()
    assert a.wait_idle(10) and b.wait_idle(10)
    assert a.runs_started + b.runs_started == 1 and store.jobs.get("j").run_count == 1


def test_a_failing_database_is_reported_once_and_the_schedule_goes_on(tmp_path, schedulers, caplog):
    import logging

    clock = Clock()
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        scheduler = schedulers(store, {"j": {"command": "true", "schedule": "* * * * *"}}, now=clock)
        scheduler.run_now()
        with store.backend.writing() as conn:
            conn.exec_driver_sql("ALTER TABLE job_state RENAME TO job_state_away")
        caplog.set_level(logging.WARNING, logger="lobstore.cron.scheduler")
        clock.at(12, 5)
        for _ in range(3):
            scheduler.run_now()
        assert "job_state" in scheduler.health()["last_error"]
        assert len([r for r in caplog.records if "the database failed" in r.message]) == 1
        with store.backend.writing() as conn:
            conn.exec_driver_sql("ALTER TABLE job_state_away RENAME TO job_state")
        scheduler.run_now()
        assert scheduler.wait_idle(10) and scheduler.health()["last_error"] is None
        assert store.jobs.get("j").run_count == 1  # the slot, 12:05, still ran once


def test_the_jobs_command_checks_a_file_and_lists_the_state(tmp_path, capsys):
    from lobstore.cli import main

    assert main(["jobs", "check", str(EXAMPLE), "--next", "2"]) == 0
    out = capsys.readouterr().out
    assert "task-manager" in out and "*/5 * * * *" in out and "examples/jobs.toml: 4 jobs" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[jobs.a]\ncommand = "x"\n')
    assert main(["jobs", "check", str(bad)]) == 1
    assert f"jobs file {bad}: job 'a': schedule: is required" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with open_store(url) as store:
        store.jobs.record_run("nightly", status="failed")
    assert main(["--db", url, "jobs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["nightly"]["run_count"], listed["nightly"]["last_status"]) == (1, "failed")


def test_a_job_writes_to_the_store_while_it_runs(tmp_path, schedulers):
    """No transaction or write lock is held while a job runs: a job that writes to the same
    SQLite file (as the task manager writes through the API) is not kept waiting."""
    from lobstore_server import LOBSTORE

    url = f"sqlite:///{tmp_path / 'x.db'}"
    clock = Clock()
    with open_store(url) as store:
        command = [str(LOBSTORE), "--db", url, "tasks", "create", "made by a job", "--type", "system"]
        scheduler = schedulers(store, {"writer": {"command": command, "schedule": "* * * * *", "timeout": 20}},
                               now=clock)
        scheduler.run_now()
        clock.at(12, 5)
        began = time.monotonic()
        scheduler.run_now()
        assert scheduler.wait_idle(30)
        writer = store.jobs.get("writer")
        assert writer.last_status == "success", writer.last_output
        assert time.monotonic() - began < 15
        assert [task.name for task in store.tasks.list()] == ["made by a job"]
