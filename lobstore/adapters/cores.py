"""The threads that serve requests, kept on one core (``lobstore serve --cpu``).

CPython runs one thread at a time. When the serving threads hand that lock to each other across
cores, every hand-off wakes a thread on another core, with cold caches: on 2 cores, GET one task
cost 497 µs of server CPU per request spread over both cores and 255 µs on one
(bench/bench_http.py; create and PATCH p99 at 32 connections fell by half). So the serving
threads (the socket watcher and the workers) share one core. Everything else stays free:
background threads (vault sync, jobs, backups) and the processes they start run anywhere.
A process started from a serving thread would inherit its core: start them from a background
thread, as the jobs and the sync do.

The core is the one the server started on; a :class:`CoreKeeper` looks every
``KEEP_INTERVAL`` seconds and moves the serving threads to another allowed core when other
work has crowded theirs while that one was clearly idler (the kernel cannot move pinned
threads; it moves everything else).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ConfigurationError

log = logging.getLogger(__name__)

AUTO, OFF = "auto", "off"
KEEP_INTERVAL = 10.0  # seconds between the keeper's looks
MOVE_MARGIN = 0.25  # of a core: how much idler another core must have been to move there

Busy = dict[int, float]  # CPU -> busy seconds since boot


PINNABLE = hasattr(os, "sched_setaffinity")  # Linux; elsewhere the kernel places every thread


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may use (its main thread's, which is never pinned)."""
    return frozenset(os.sched_getaffinity(os.getpid())) if PINNABLE else frozenset()


def core_setting(value: str | None, *, source: str = "--cpu") -> str:
    """``--cpu``'s value checked: auto (the default), off or the number of an allowed CPU."""
    value = (value or AUTO).strip().lower()
    if value in (AUTO, OFF):
        return value
    if not PINNABLE:
        raise ConfigurationError(f"{source}: this system cannot keep threads on a core; say auto or off")
    allowed = sorted(allowed_cpus())
    if not value.isdigit() or int(value) not in allowed:
        raise ConfigurationError(
            f"{source} must be auto, off or one of this process's CPUs ({', '.join(map(str, allowed))}), got {value!r}")
    return value


class ServingCore:
    """The core the serving threads share, and the threads on it (by native thread id)."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self._threads: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_setting(cls, setting: str) -> ServingCore | None:
        """The core ``--cpu`` asks for; None when off or when the process may use only one CPU."""
        if setting == OFF or (setting == AUTO and len(allowed_cpus()) < 2):
            return None
        return cls(int(setting) if setting != AUTO else current_cpu())

    def join(self, native_id: int | None = None) -> None:
        """Keep a thread (the calling one by default) on this core from now on."""
        native_id = threading.get_native_id() if native_id is None else native_id
        with self._lock:
            if _pin(native_id, {self.cpu}):
                self._threads.add(native_id)

    @property
    def threads(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._threads)

    def move(self, cpu: int) -> None:
        """Move every serving thread to ``cpu``; threads that have ended are forgotten."""
        with self._lock:
            self.cpu = cpu
            self._threads = {tid for tid in self._threads if _pin(tid, {cpu})}


def _pin(native_id: int, cpus: set[int]) -> bool:
    """Set one thread's CPUs (Linux applies sched_setaffinity to the thread a TID names)."""
    try:
        os.sched_setaffinity(native_id, cpus)
        return True
    except ProcessLookupError:  # the thread has ended
        return False
    except OSError as exc:  # a CPU taken away (cgroup cpuset), or no permission: serve anyway
        log.warning("could not keep a serving thread on CPU %s (%s); it runs on any core", sorted(cpus), exc)
        return False


def current_cpu() -> int:
    """The CPU the calling thread runs on (the kernel placed it on one with room)."""
    try:
        return int(Path("/proc/thread-self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return min(allowed_cpus())


# -- the keeper ---------------------------------------------------------------------------------
def cpu_busy(stat: str | None = None) -> Busy:
    """Busy seconds per CPU since boot, from /proc/stat (everything but idle and iowait)."""
    text = Path("/proc/stat").read_text() if stat is None else stat
    tick = os.sysconf("SC_CLK_TCK")
    busy: Busy = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(x) for x in rest.split()]
            busy[int(name[3:])] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / tick
    return busy


def threads_busy(native_ids: Iterable[int]) -> float:
    """CPU seconds these threads of this process have used (ended ones count nothing)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for tid in native_ids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def better_cpu(ours: int, others_here: float, load: dict[int, float], margin: float = MOVE_MARGIN) -> int | None:
    """The CPU to move to, or None to stay. ``others_here``: the share of our core that other
    work took (ours not counted); ``load``: every allowed CPU's busy share. Another core wins
    only when it was idler by ``margin``, so the threads do not chase noise."""
    candidates = [(share, cpu) for cpu, share in load.items() if cpu != ours]
    if not candidates:
        return None
    share, cpu = min(candidates)
    return cpu if share + margin < others_here else None


class CoreKeeper:
    """A thread that moves the serving threads off a core other work has crowded."""

    def __init__(self, core: ServingCore, *, interval: float = KEEP_INTERVAL,
                 busy: Callable[[], Busy] = cpu_busy, ours: Callable[[Iterable[int]], float] = threads_busy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.interval = interval
        self._busy, self._ours, self._clock = busy, ours, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[float, Busy, float] | None = None

    def start(self) -> None:
        try:
            self._last = self._sample()
        except (OSError, ValueError) as exc:  # no /proc: the threads stay where they are
            log.warning("cannot read the cores' load (%s); the request threads stay on CPU %d", exc, self.core.cpu)
            return
        self._thread = threading.Thread(target=self._run, name="lobstore-cores", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> tuple[float, Busy, float]:
        return self._clock(), self._busy(), self._ours(self.core.threads)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.look()
            except Exception:  # noqa: BLE001 - /proc unreadable: stay where we are
                log.exception("the serving core keeper failed; the serving threads stay on CPU %d", self.core.cpu)
                return

    def look(self) -> int | None:
        """Compare the cores since the last look; move if another was clearly idler. The CPU
        moved to, or None."""
        now = self._sample()
        if self._last is None:
            self._last = now
            return None
        (then, busy_then, ours_then), (at, busy_now, ours_now) = self._last, now
        self._last = now
        elapsed = at - then
        allowed = allowed_cpus() | {self.core.cpu}
        if elapsed <= 0 or self.core.cpu not in busy_now:
            return None
        load = {cpu: (busy_now[cpu] - busy_then.get(cpu, busy_now[cpu])) / elapsed
                for cpu in busy_now if cpu in allowed}
        others_here = load[self.core.cpu] - max(0.0, ours_now - ours_then) / elapsed
        target = better_cpu(self.core.cpu, others_here, load)
        if target is not None:
            log.info("serving threads: CPU %d is %.0f%% busy with other work, CPU %d %.0f%% busy: moving there",
                     self.core.cpu, 100 * others_here, target, 100 * load[target])
            self.core.move(target)
        return target
