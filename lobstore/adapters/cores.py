"""The threads that serve requests, kept on one core (``lobstore serve --cpu``).

CPython runs one thread at a time. When the serving threads hand that lock to each other across
cores, every hand-off wakes a thread on another core, with cold caches: on 2 cores, GET one task
cost 497 µs of server CPU per request spread over both cores and 255 µs on one
(bench/bench_http.py; create and PATCH p99 at 32 connections fell by half). So the serving
threads (the socket watcher and the workers, and the helpers they start: cheroot's thread for
connections over the cap, the work slots' keeper) share one core. Everything else stays free:
background threads start on every core (``lobstore.threads.background_thread``), and so do the
processes they start (git, jobs, backups).

The core is the one the server started on; a :class:`CoreKeeper` looks every
``KEEP_INTERVAL`` seconds and moves the serving threads to another allowed core when other
work has crowded theirs while that one was clearly idler, two looks in a row (the kernel cannot
move pinned threads; it moves everything else).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ConfigurationError
from ..threads import PINNABLE, background_thread, process_cpus

log = logging.getLogger(__name__)

AUTO, OFF = "auto", "off"
KEEP_INTERVAL = 10.0  # seconds between the keeper's looks
MOVE_MARGIN = 0.25  # of a core: how much idler another core must have been to move there

Busy = dict[int, float]  # CPU -> busy seconds since boot


def core_setting(value: str | None, *, source: str = "--cpu") -> str:
    """``--cpu``'s value checked: auto (the default), off or the number of an allowed CPU."""
    value = (value or AUTO).strip().lower()
    if value in (AUTO, OFF):
        return value
    if not PINNABLE:
        raise ConfigurationError(f"{source}: this system cannot keep threads on a core; say auto or off")
    allowed = sorted(process_cpus())
    if not value.isdigit() or int(value) not in allowed:
        raise ConfigurationError(
            f"{source} must be auto, off or one of this process's CPUs ({', '.join(map(str, allowed))}), got {value!r}")
    return value


class ServingCore:
    """The core the serving threads share. The threads on it are the process's threads kept on
    exactly that CPU: those joined, and those they started (which inherit it)."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self._lock = threading.Lock()

    @classmethod
    def for_setting(cls, setting: str) -> ServingCore | None:
        """The core ``--cpu`` asks for; None when off or when the process may use only one CPU."""
        if setting == OFF or (setting == AUTO and len(process_cpus()) < 2):
            return None
        return cls(int(setting) if setting != AUTO else current_cpu())

    def join(self, native_id: int | None = None) -> None:
        """Keep a thread (the calling one by default) on this core from now on."""
        with self._lock:
            _pin(threading.get_native_id() if native_id is None else native_id, {self.cpu})

    @property
    def threads(self) -> frozenset[int]:
        """The native ids of this process's threads on this core."""
        return frozenset(_threads_on(self.cpu))

    def move(self, cpu: int) -> None:
        """Move every thread on this core to ``cpu``."""
        with self._lock:
            for tid in _threads_on(self.cpu):
                _pin(tid, {cpu})
            self.cpu = cpu


def _threads_on(cpu: int) -> list[int]:
    """This process's threads kept on exactly ``cpu`` (ended ones are skipped)."""
    found = []
    for name in os.listdir("/proc/self/task"):
        try:
            if os.sched_getaffinity(int(name)) == {cpu}:
                found.append(int(name))
        except OSError:  # ended since the listing
            continue
    return found


def _pin(native_id: int, cpus: set[int]) -> None:
    """Set one thread's CPUs (Linux applies sched_setaffinity to the thread a TID names)."""
    try:
        os.sched_setaffinity(native_id, cpus)
    except ProcessLookupError:  # the thread has ended
        pass
    except OSError as exc:  # a CPU taken away (cgroup cpuset), or no permission: serve anyway
        log.warning("could not keep a serving thread on CPU %s (%s); it runs on any core", sorted(cpus), exc)


def _stat(path: str) -> list[str]:
    """The fields of a /proc stat file after the command name (which may hold spaces and
    parentheses): field 3 of proc(5) is [0]."""
    return Path(path).read_text().rsplit(")", 1)[1].split()


def current_cpu() -> int:
    """The CPU the calling thread runs on (the kernel placed it on one with room)."""
    try:
        return int(_stat("/proc/thread-self/stat")[36])
    except (OSError, IndexError, ValueError):
        return min(process_cpus())


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
            fields = _stat(f"/proc/self/task/{tid}/stat")
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
        self._wanted: int | None = None  # the core the last look would have moved to

    def start(self) -> None:
        try:
            self._last = self._sample()
        except (OSError, ValueError) as exc:  # no /proc: the threads stay where they are
            log.warning("cannot read the cores' load (%s); the request threads stay on CPU %d", exc, self.core.cpu)
            return
        self._thread = background_thread(self._run, name="lobstore-cores")
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
        """Compare the cores since the last look; move when the same other core was clearly
        idler at this look and the one before (two processes that started on one core would
        otherwise chase each other). The CPU moved to, or None."""
        now = self._sample()
        if self._last is None:
            self._last = now
            return None
        (then, busy_then, ours_then), (at, busy_now, ours_now) = self._last, now
        self._last = now
        elapsed = at - then
        allowed = process_cpus() | {self.core.cpu}
        if elapsed <= 0 or self.core.cpu not in busy_now or self.core.cpu not in busy_then:
            return None
        load = {cpu: (busy_now[cpu] - busy_then[cpu]) / elapsed
                for cpu in busy_now if cpu in allowed and cpu in busy_then}  # a CPU new since: no figure
        others_here = load[self.core.cpu] - max(0.0, ours_now - ours_then) / elapsed
        target = better_cpu(self.core.cpu, others_here, load)
        wanted, self._wanted = self._wanted, target
        if target is None or target != wanted:
            return None
        log.info("serving threads: CPU %d is %.0f%% busy with other work, CPU %d %.0f%% busy: moving there",
                 self.core.cpu, 100 * others_here, target, 100 * load[target])
        self.core.move(target)
        self._wanted = None
        self._last = self._sample()  # our own time now counts on the new core
        return target
