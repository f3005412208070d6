"""Cron jobs as users meet them: the /jobs routes over a running scheduler, and `lobstore serve`
processes with a jobs file (SIGTERM during a run, a second serve on one database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("croniter")
pytest.importorskip("cheroot")

from lobstore import open_store  # noqa: E402
from lobstore.adapters.http import make_app  # noqa: E402
from lobstore.cron import JobScheduler, parse_jobs  # noqa: E402

from lobstore_server import LOBSTORE  # noqa: E402
from test_jobs import dead, hold, wait_until  # noqa: E402
from wsgi_client import WsgiClient  # noqa: E402

UPSTREAM_KEYS = ["description", "schedule", "enabled", "running", "last_run", "last_status", "last_duration",
                 "run_count", "fail_count", "next_run"]
NEVER = "0 0 1 1 *"  # once a year: no slot comes by while a test runs


@pytest.fixture
def store(db_url):
    with open_store(db_url) as store:
        yield store


def logged(server, pattern: str) -> str:
    """A line the server logged already, or the next one matching ``pattern``."""
    import re

    return next((line for line in server.lines if re.search(pattern, line)), None) or server.wait_for(pattern)


def write_jobs(folder: Path, text: str) -> Path:
    path = folder / "jobs.toml"
    path.write_text(text)
    return path


# -- the routes over a running scheduler (WSGI) -----------------------------------------------
def test_the_job_routes_answer_as_upstream_lobwife(store, tmp_path):
    jobs = parse_jobs({"jobs": {
        "task-manager": {"command": hold(tmp_path), "schedule": NEVER, "description": "Task assignment"},
        "review-prs": {"command": "echo reviewed", "schedule": NEVER},
    }})
    store.jobs.record_run("outside-job", status="success")  # a job an outside runner records
    scheduler = JobScheduler(store, jobs, stop_grace=5)
    store.set_job_runner(scheduler)
    scheduler.start()
    client = WsgiClient(make_app(store))
    try:
        listed = client.get("/api/jobs").json
        assert list(listed) == ["task-manager", "review-prs", "outside-job"]
        manager = listed["task-manager"]
        assert list(manager)[:len(UPSTREAM_KEYS)] == UPSTREAM_KEYS
        assert (manager["description"], manager["schedule"], manager["enabled"], manager["running"],
                manager["last_run"], manager["run_count"], manager["script"], manager["concurrency"]) == \
            ("Task assignment", NEVER, True, False, None, 0, hold(tmp_path), "forbid")
        assert manager["next_run"] == f"{datetime.now(timezone.utc).year + 1}-01-01T00:00:00Z"
        assert listed["outside-job"]["command"] is None and listed["outside-job"]["next_run"] is None

        response = client.post("/api/jobs/task-manager/trigger")
        assert (response.status, response.json) == (200, {"message": "Job task-manager triggered"})
        wait_until(lambda: client.get("/api/jobs/task-manager").json["running"], what="the run to start")
        busy = client.post("/api/v1/jobs/task-manager/trigger")
        assert busy.status == 409 and busy.json["message"] == "Job task-manager is already running"
        unknown = client.post("/api/jobs/nope/trigger")
        assert unknown.status == 404 and unknown.json["message"] == "Unknown job: nope"
        outside = client.post("/api/jobs/outside-job/trigger")
        assert outside.status == 503 and "not in this server's jobs file" in outside.json["message"]
        (tmp_path / "release").touch()
        done = wait_until(lambda: (job := client.get("/api/jobs/task-manager").json)["last_status"] and job,
                          what="the run to be recorded")
        assert (done["running"], done["last_status"], done["run_count"], done["last_exit_code"]) == \
            (False, "success", 1, 0)

        response = client.post("/api/jobs/review-prs/disable")
        assert response.status == 200 and response.json["message"] == "Job review-prs disabled"
        assert client.get("/api/jobs").json["review-prs"]["next_run"] is None
        assert client.post("/api/jobs/review-prs/trigger").status == 200  # disabled jobs still trigger
        wait_until(lambda: client.get("/api/jobs/review-prs").json["last_output"] == "reviewed",
                   what="the triggered run of a disabled job")
        response = client.post("/api/jobs/review-prs/enable")
        assert (response.json["message"], response.json["enabled"]) == ("Job review-prs enabled", True)
        assert response.json["next_run"] == f"{datetime.now(timezone.utc).year + 1}-01-01T00:00:00Z"
        assert client.post("/api/jobs/nope/enable").json["message"] == "Unknown job: nope"
    finally:
        assert scheduler.stop(timeout=10)


# -- lobstore serve ---------------------------------------------------------------------------
def test_serve_refuses_a_bad_jobs_file_naming_file_job_and_field(tmp_path):
    path = write_jobs(tmp_path, '[jobs.task-manager]\ncommand = "x"\nschedule = "*/5 * * *"\n')
    result = subprocess.run([str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0",
                             "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"jobs file {path}: job 'task-manager': schedule: must be a 5-field cron expression" in result.stderr


def test_sigterm_during_a_run_records_interrupted_and_leaves_no_process(db_url, servers, tmp_path):
    pids = tmp_path / "pids"
    jobs = write_jobs(tmp_path, f"""
[scheduler]
stop_grace = 1
[jobs.stubborn]
command = "trap '' TERM; sleep 60 & echo $$ $! > '{pids}'; echo working; wait"
schedule = "{NEVER}"
""")
    server = servers(db_url, "--jobs", str(jobs))
    assert server.request("POST", "/api/jobs/stubborn/trigger")[0] == 200
    shell, sleeper = map(int, wait_until(lambda: pids.exists() and pids.read_text().split(), what="the job to start"))
    assert server.request("GET", "/api/jobs/stubborn")[2]["running"] is True
    began = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - began < 15
    wait_until(lambda: dead(shell) and dead(sleeper), what="the job's processes to be gone")
    with open_store(db_url) as store:
        job = store.jobs.get("stubborn")
    assert (job.last_status, job.running, job.run_count, job.fail_count) == ("interrupted", False, 1, 1)
    assert job.last_output.startswith("working\n[interrupted: lobstore serve stopped")
    assert any("killing its process group" in line for line in server.lines)


def test_a_second_serve_on_one_sqlite_file_stands_by_saying_so_and_takes_over(servers, tmp_path):
    url = f"sqlite:///{tmp_path / 'lobwife.db'}"
    runs = tmp_path / "runs"
    jobs = write_jobs(tmp_path, f'[jobs.j]\ncommand = "echo $PPID >> \'{runs}\'"\nschedule = "{NEVER}"\n')
    first = servers(url, "--jobs", str(jobs))
    second = servers(url, "--jobs", str(jobs))
    standby = logged(second, r"the job scheduler: .* runs it already")
    assert f"pid {first.proc.pid} " in standby and "stands by" in standby
    assert first.terminate() == 0
    logged(second, r"the job scheduler: taking over here")
    assert second.request("POST", "/api/jobs/j/trigger")[0] == 200
    wait_until(lambda: runs.exists() and runs.read_text().split() == [str(second.proc.pid)],
               what="the second serve to run the job")


@pytest.mark.slow
def test_two_serves_on_one_postgresql_database_run_a_slot_once_and_take_over(postgres_url, servers, tmp_path):
    runs = tmp_path / "runs"
    jobs = write_jobs(tmp_path, f"""
[scheduler]
catch_up_window = 31622400  # a year: the slot below, missed months ago, is still run
[jobs.j]
command = "echo $PPID >> '{runs}'"
schedule = "{NEVER}"
""")
    # The slot of this year's 1 January is due: both serves find it at start, one runs it.
    slot = datetime(datetime.now(timezone.utc).year, 1, 1, tzinfo=timezone.utc)
    with open_store(postgres_url) as store:
        store.jobs.register("j", schedule=NEVER)
        assert store.jobs.move_next_run("j", seen=None, next_run=slot)
    one = servers(postgres_url, "--jobs", str(jobs))
    two = servers(postgres_url, "--jobs", str(jobs))
    ran = wait_until(lambda: runs.exists() and runs.read_text().split(), what="the slot to run")
    time.sleep(3)  # three more ticks of both schedulers: nothing else runs
    assert runs.read_text().split() == ran and len(ran) == 1
    leader, other = (one, two) if ran == [str(one.proc.pid)] else (two, one)
    assert ran == [str(leader.proc.pid)]
    with open_store(postgres_url) as store:
        job = store.jobs.get("j")
    assert (job.run_count, job.next_run) == (1, slot.replace(year=slot.year + 1))
    logged(other, r"the job scheduler: .* runs it already")

    os.kill(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait(timeout=10)
    assert other.request("POST", "/api/jobs/j/trigger")[0] == 200
    wait_until(lambda: runs.read_text().split() == ran + [str(other.proc.pid)], timeout=15,
               what="the other serve to take over and run the trigger")
    logged(other, r"the job scheduler: taking over here")
    with open_store(postgres_url) as store:
        assert store.jobs.get("j").run_count == 2


def test_no_jobs_file_means_no_scheduler_and_upstream_503(servers, tmp_path):
    server = servers(f"sqlite:///{tmp_path / 'x.db'}")
    status, _, body = server.request("POST", "/api/jobs/j/runs", {"status": "success"})
    assert status == 201
    status, _, body = server.request("POST", "/api/jobs/j/trigger")
    assert status == 503 and body["code"] == "no_job_runner"
    assert not list(tmp_path.glob("*.jobs.lock"))  # no schedule duty (the lease sweep has its own)


def test_the_job_environment_and_folder(servers, tmp_path):
    (tmp_path / "work").mkdir()
    jobs = write_jobs(tmp_path, f"""
[jobs.env]
command = ["{sys.executable}", "-c", "import os; print(os.environ['LOBSTORE_JOB'], os.environ['GREETING'], os.getcwd())"]
schedule = "{NEVER}"
working_dir = "work"
env = {{ GREETING = "hello ${{LOB_TEST_NAME}}" }}
""")
    env = {**os.environ, "LOB_TEST_NAME": "lobster"}
    server = subprocess.Popen([str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0",
                               "--jobs", str(jobs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
            wait_until(lambda: "env" in store.jobs.list(), what="serve to register its jobs")
            wait_until(lambda: (tmp_path / "x.db.jobs.lock").exists(), what="the jobs duty lock")
            store.jobs.request_trigger("env", datetime.now(timezone.utc))  # as another replica's API would
            job = wait_until(lambda: (j := store.jobs.get("env")).last_status and j, what="the run")
        assert job.last_output == f"env hello lobster {(tmp_path / 'work').resolve()}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
