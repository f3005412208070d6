"""The one lifecycle of serve's background services (lobstore.services.BackgroundService)."""

from __future__ import annotations

import threading

from lobstore.services import BackgroundService

WAIT = 10.0  # generous: a deadline for a failure, never a timing assertion


class Probe(BackgroundService):
    """Counts passes; a pass may be made to fail or to hang, and so may the idle watch."""

    name = "probe"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.passed = threading.Semaphore(0)
        self.fail = False
        self.hold_pass = threading.Event()
        self.hold_pass.set()
        self.in_idle = threading.Event()
        self.hold_idle = threading.Event()
        self.hold_idle.set()

    def run_pass(self) -> None:
        self.hold_pass.wait()
        self.passed.release()
        if self.fail:
            raise RuntimeError("database down")

    def idle(self) -> None:
        self.in_idle.set()
        self.hold_idle.wait()


def in_thread(call) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(WAIT)
    return thread


def test_a_slow_watch_between_passes_holds_up_neither_trigger_nor_stop():
    # The sync daemon reads the event feed in idle(): a slow database there must not block
    # POST /api/sync/trigger or shutdown, so idle() runs outside the service's lock.
    service = Probe(interval=3600, poll=0.01)
    service.hold_idle.clear()
    service.start()
    try:
        assert service.passed.acquire(timeout=WAIT)  # the first pass, at start
        assert service.in_idle.wait(WAIT)
        assert not in_thread(service.trigger).is_alive(), "trigger() waited for the feed query"
        service.hold_idle.set()
        assert service.passed.acquire(timeout=WAIT)  # the triggered pass
    finally:
        service.hold_idle.set()
        assert service.stop(WAIT)


def test_a_failed_pass_is_recorded_and_the_next_one_comes_after_the_retry_delay():
    service = Probe(interval=3600, retry_delay=0.05)
    service.fail = True
    service.start()
    try:
        assert service.passed.acquire(timeout=WAIT)
        service.fail = False
        assert service.passed.acquire(timeout=WAIT)  # retried long before the hour is up
        health = service.health()
        assert health["running"] and health["name"] == "probe"
        assert health["passes"] >= 2 and health["last_pass_at"].endswith("Z")
    finally:
        assert service.stop(WAIT)
    assert not service.running and service.health()["running"] is False


def test_stop_answers_whether_the_pass_in_progress_ended_within_the_deadline():
    service = Probe(interval=3600)
    service.hold_pass.clear()
    service.start()
    assert service.stop(0.05) is False  # the first pass hangs
    assert service.running
    service.hold_pass.set()
    assert service.stop(WAIT) is True
    assert service.passes == 1 and service.last_error is None  # no pass after stop


def test_a_pass_asked_for_on_another_thread_waits_for_the_one_in_progress():
    service = Probe(interval=3600)
    inside, overlaps = [], []
    original = service.run_pass

    def counted():
        overlaps.append(len(inside))
        inside.append(1)
        try:
            original()
        finally:
            inside.pop()

    service.run_pass = counted
    service.hold_pass.clear()
    service.start()  # its first pass hangs until released
    caller = threading.Thread(target=service.run_now, daemon=True)
    caller.start()
    caller.join(0.2)
    assert caller.is_alive() and overlaps == [0]  # the caller waits its turn
    service.hold_pass.set()
    caller.join(WAIT)
    assert service.stop(WAIT)  # the thread's pass is over too, whichever of the two went first
    assert not caller.is_alive() and overlaps == [0, 0] and service.passes == 2


class OnDuty(Probe):
    """A service that opts into a duty with one line."""

    name = "duty probe"
    duty = "probe"

    def __init__(self, store, **options) -> None:
        super().__init__(**options)
        self.store = store
        self.took_over = 0

    def on_duty_acquired(self) -> None:
        self.took_over += 1


def test_a_duty_runs_in_one_process_and_a_standby_takes_over_when_it_stops(db_url):
    """Two stores (two engines, as two replicas have) on one database: only the holder runs
    passes; when it stops (releasing the duty), the other takes over and says so in health()."""
    from lobstore import open_store

    with open_store(db_url) as one, open_store(db_url) as two:
        first, second = OnDuty(one, interval=60), OnDuty(two, interval=60)
        first.takeover = second.takeover = 0.2
        assert not first.standing_by  # not started: it has not looked, so it claims nothing
        first.start()
        assert first.passed.acquire(timeout=WAIT)
        second.start()
        try:
            wait = threading.Event()
            wait.wait(1.0)  # several of the standby's tries
            assert second.passes == 0 and second.health()["duty_held"] is False
            assert second.standing_by and not first.standing_by
            assert first.health()["duty"] == "probe" and first.health()["duty_held"] is True
            assert first.stop(timeout=WAIT)
            assert second.passed.acquire(timeout=WAIT)  # took over and ran a pass at once
            assert second.took_over == 1 and second.health()["duty_held"] is True
        finally:
            first.stop(timeout=WAIT)
            second.stop(timeout=WAIT)


def test_a_service_without_a_duty_runs_everywhere():
    first, second = Probe(interval=60), Probe(interval=60)
    for service in (first, second):
        service.start()
    try:
        assert first.passed.acquire(timeout=WAIT) and second.passed.acquire(timeout=WAIT)
        assert "duty" not in first.health()
    finally:
        first.stop(timeout=WAIT)
        second.stop(timeout=WAIT)
