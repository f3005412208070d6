"""The serving threads kept on one core (lobstore/adapters/cores.py, `serve --cpu`)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from lobstore.adapters.cores import CoreKeeper, ServingCore, better_cpu, core_setting, cpu_busy
from lobstore.errors import ConfigurationError
from lobstore.threads import PINNABLE, background_thread, process_cpus
from lobstore_server import LOBSTORE, START_TIMEOUT

pytestmark = pytest.mark.skipif(not PINNABLE, reason="this system cannot keep threads on a core (Linux only)")
CPUS = sorted(process_cpus())
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="this machine lets the tests use one CPU: nothing to pin")


def affinity_of_threads(pid: int) -> dict[int, set[int]]:
    return {int(tid): os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture
def parked():
    """A thread that idles until the test ends; its native id."""
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    yield thread.native_id
    done.set()
    thread.join()


# -- serve ---------------------------------------------------------------------------------------
@needs_two
def test_serve_keeps_the_request_threads_on_the_cpu_asked_for_and_nothing_else(tmp_path, servers):
    cpu = CPUS[-1]
    server = servers(f"sqlite:///{tmp_path / 'a.db'}", "--threads", "4", "--cpu", str(cpu))
    assert f"on CPU {cpu})" in server.lines[-1]

    def pinned() -> list[int]:
        return [tid for tid, cpus in affinity_of_threads(server.proc.pid).items() if cpus == {cpu}]

    # Four workers, the thread watching the sockets and cheroot's thread that answers
    # connections over the cap (started by the watcher as it begins, it shares its core).
    deadline = time.monotonic() + START_TIMEOUT
    while len(pinned()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pinned()) == 6
    threads = affinity_of_threads(server.proc.pid)
    assert threads[server.proc.pid] == set(CPUS)  # the main thread (and the background ones) run anywhere
    assert len(threads) > len(pinned()) + 1


@needs_two
def test_background_threads_a_request_starts_run_anywhere(postgres_url, servers):
    """On PostgreSQL the first write starts the change notifier's thread, from a request thread."""
    import http.client

    cpu = CPUS[-1]
    server = servers(postgres_url, "--threads", "4", "--cpu", str(cpu))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/api/v1/tasks", body=b'{"name": "a task", "actor": "test"}',
                 headers={"Content-Type": "application/json"})
    created = conn.getresponse()
    created.read()
    assert created.status == 201
    before = len(affinity_of_threads(server.proc.pid))
    conn.request("GET", "/api/v1/events?after=1&wait=1")  # a long poll: the listening thread
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    threads = affinity_of_threads(server.proc.pid)
    assert len(threads) >= before
    assert len([tid for tid, cpus in threads.items() if cpus == {cpu}]) == 6  # the request threads alone


@needs_two
def test_serve_with_cpu_off_lets_the_kernel_place_every_thread(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'a.db'}", "--cpu", "off")
    assert "on CPU" not in server.lines[-1]
    assert all(cpus == set(CPUS) for cpus in affinity_of_threads(server.proc.pid).values())


@pytest.mark.parametrize("given", ["99", "x", "-1", "0.5"])
def test_a_cpu_this_process_may_not_use_is_refused_before_anything_starts(tmp_path, given):
    result = subprocess.run([str(LOBSTORE), "serve", "--db", f"sqlite:///{tmp_path / 'a.db'}", "--cpu", given],
                            capture_output=True, text=True, timeout=START_TIMEOUT)
    assert result.returncode != 0
    assert f"--cpu or $LOBSTORE_CPU must be auto, off or one of this process's CPUs ({', '.join(map(str, CPUS))}), " \
           f"got {given!r}" in result.stderr
    assert not (tmp_path / "a.db").exists()


def test_the_setting_reads_auto_off_and_allowed_cpus():
    assert core_setting(None) == "auto"
    assert core_setting(" OFF ") == "off"
    assert core_setting(str(CPUS[0])) == str(CPUS[0])
    with pytest.raises(ConfigurationError, match="got '1000'"):
        core_setting("1000")


# -- the core and its keeper --------------------------------------------------------------------
@needs_two
def test_a_joined_thread_runs_on_the_core_and_moves_with_it(parked):
    core = ServingCore(CPUS[0])
    core.join(parked)
    assert os.sched_getaffinity(parked) == {CPUS[0]}
    core.move(CPUS[1])
    assert os.sched_getaffinity(parked) == {CPUS[1]} and core.cpu == CPUS[1]


@needs_two
def test_threads_a_serving_thread_starts_share_its_core_and_move_with_it_but_background_ones_run_anywhere():
    core, done, seen = ServingCore(CPUS[0]), threading.Event(), {}

    def serving() -> None:
        core.join()
        helper = threading.Thread(target=done.wait)  # e.g. cheroot's, the work slots' keeper
        background = background_thread(done.wait, name="background")  # e.g. the change notifier
        helper.start()
        background.start()
        seen.update(helper=helper.native_id, background=background.native_id)
        done.wait()
        helper.join()
        background.join()

    thread = threading.Thread(target=serving)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert core.threads == {thread.native_id, seen["helper"]}
        time.sleep(0.05)  # the background thread has widened its own CPUs by now
        assert os.sched_getaffinity(seen["background"]) == set(CPUS)
        core.move(CPUS[1])
        assert os.sched_getaffinity(seen["helper"]) == {CPUS[1]} == os.sched_getaffinity(thread.native_id)
        assert core.threads == {thread.native_id, seen["helper"]}
    finally:
        done.set()
        thread.join()


def test_another_core_wins_only_when_it_was_clearly_idler():
    assert better_cpu(0, others_here=0.9, load={0: 1.0, 1: 0.1}) == 1
    assert better_cpu(0, others_here=0.3, load={0: 1.0, 1: 0.1}) is None  # within the margin: stay
    assert better_cpu(0, others_here=0.9, load={0: 1.0, 1: 0.8, 2: 0.2}) == 2
    assert better_cpu(0, others_here=0.9, load={0: 1.0}) is None


@needs_two
def test_the_keeper_moves_the_threads_off_a_core_other_work_crowds(parked):
    first, second = CPUS[0], CPUS[1]
    core = ServingCore(first)
    core.join(parked)
    clock = [0.0]
    busy = [{first: 0.0, second: 0.0}]
    ours = [0.0]
    keeper = CoreKeeper(core, busy=lambda: dict(busy[0]), ours=lambda _threads: ours[0], clock=lambda: clock[0])
    keeper._last = keeper._sample()

    # Ten seconds: our core was busy 9 s, 4 s of them our own threads; the other core 1 s.
    clock[0], busy[0], ours[0] = 10.0, {first: 9.0, second: 1.0}, 4.0
    assert keeper.look() is None  # half of our core went to other work, the other was 90 % idle: once
    clock[0], busy[0], ours[0] = 20.0, {first: 18.0, second: 2.0}, 8.0
    assert keeper.look() == second  # twice in a row: move
    assert os.sched_getaffinity(parked) == {second}

    # On the new core, other work takes 10 % while the old one is 30 % busy: stay.
    clock[0], busy[0], ours[0] = 30.0, {first: 21.0, second: 7.0}, 12.0
    assert keeper.look() is None
    # Crowded a little more (30 % other work against 20 %): within the margin, stay.
    clock[0], busy[0], ours[0] = 40.0, {first: 23.0, second: 14.0}, 16.0
    assert keeper.look() is None and core.cpu == second and os.sched_getaffinity(parked) == {second}


@needs_two
def test_the_keeper_stays_when_the_crowding_does_not_last(parked):
    first, second = CPUS[0], CPUS[1]
    core = ServingCore(first)
    core.join(parked)
    clock, busy, ours = [0.0], [{first: 0.0, second: 0.0}], [0.0]
    keeper = CoreKeeper(core, busy=lambda: dict(busy[0]), ours=lambda _threads: ours[0], clock=lambda: clock[0])
    keeper._last = keeper._sample()
    clock[0], busy[0], ours[0] = 10.0, {first: 9.0, second: 1.0}, 4.0
    assert keeper.look() is None
    clock[0], busy[0], ours[0] = 20.0, {first: 14.0, second: 2.0}, 8.0  # our core: only ours
    assert keeper.look() is None
    clock[0], busy[0], ours[0] = 30.0, {first: 23.0, second: 3.0, 2: 0.0}, 12.0  # a CPU with no earlier figure
    assert keeper.look() is None and core.cpu == first and os.sched_getaffinity(parked) == {first}


def test_busy_seconds_are_read_per_cpu_from_proc_stat():
    stat = ("cpu  10 0 10 100 5 0 0 0 0 0\n"
            "cpu0 100 0 50 1000 20 0 0 0 0 0\n"
            "cpu1 10 5 5 2000 0 1 1 0 0 0\n"
            "intr 1 2 3\n")
    tick = os.sysconf("SC_CLK_TCK")
    assert cpu_busy(stat) == {0: 150 / tick, 1: 22 / tick}
    assert set(cpu_busy()) >= set(CPUS)  # the real file names every CPU this process may use


@needs_two
def test_a_keeper_that_cannot_read_the_cores_leaves_the_threads_where_they_are(parked, caplog):
    core = ServingCore(CPUS[0])
    core.join(parked)

    def unreadable() -> dict[int, float]:
        raise OSError("/proc/stat: no such file")

    keeper = CoreKeeper(core, busy=unreadable)
    keeper.start()  # warns, starts no thread: serving goes on
    keeper.stop()
    assert keeper._thread is None
    assert "cannot read the cores' load" in caplog.text
    assert os.sched_getaffinity(parked) == {CPUS[0]} and core.cpu == CPUS[0]
