"""Work slots: how many requests run at once, apart from how many are open.

Python runs one thread at a time (the GIL). A server that lets 8 or 32 threads work at once
on 2 cores does not serve more: the threads hand the GIL to each other at every database row
and socket call, a quarter of the CPU goes to the kernel switching them, and each request
costs about twice the CPU it costs alone (a list of 50 tasks: 1.2 ms alone, 2.2 ms among 8).
So ``lobstore serve`` keeps many threads — connections, event streams and long polls need
them — but lets only a few *work* at once: a request takes its **turn** (a slot,
:meth:`WorkSlots.turn`) before its head is parsed and gives it back once its answer is made.
The others wait for theirs in the order they came, without touching the GIL.

A turn is given back for whatever waits on something other than this process's CPU: reading
a request's body from the client and writing the answer to it (the server does that), the
writer lock and a commit's flush to disk (the backend), an event stream's next event, a long
poll, GitHub minting a token. Such code runs inside :func:`waiting`, which gives the turn back
for the block and takes it again afterwards. A lock that such a waiter may hold is taken with
:func:`holding`, which waits for it without the turn too. Outside a server (the library, tests,
the CLI) there is no turn and both do nothing more than a plain wait.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("lobstore_work_turn", default=None)


OVERTIME = 0.005  # s a turn runs before another may be lent beside it (Python's own switch interval)


class WorkSlots:
    """At most ``count`` turns held at once; the others wait in the order they came. A freed
    slot is handed to the longest waiter directly (a plain semaphore lets a thread that just gave
    one back take it again at once, and a waiter can starve: a long tail).

    ``prompt`` of the slots (all by default) are for anyone; the rest are *lent*: only when every
    held turn has run past ``overtime``, the longest waiter gets one beside them. So short
    requests run one at a time when ``prompt`` is 1 (two working threads trade the GIL at every
    row and socket call: 10 % of a small request's CPU), and a long one (a dashboard page of
    80 ms) still lets the others through. A keeper thread lends the slots; it runs only while
    turns are awaited.
    """

    def __init__(self, count: int, *, prompt: int | None = None, overtime: float = OVERTIME) -> None:
        if count < 1:
            raise ValueError(f"work slots must be at least 1, got {count}")
        self.count = count
        self.prompt = count if prompt is None else max(1, min(prompt, count))
        self.overtime = overtime
        self._held: dict[Turn, float] = {}  # turn -> when it was taken (monotonic)
        self._waiters: deque[tuple[threading.Lock, Turn]] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the keeper's: waiters came, a slot came free
        self._keeper: threading.Thread | None = None

    @contextmanager
    def turn(self) -> Iterator[Turn]:
        """This thread's turn for the block (a request), held from the start; given back at the
        end if it still is."""
        turn = Turn(self)
        token = _current.set(turn)
        try:
            turn.take()
            yield turn
        finally:
            turn.give()
            _current.reset(token)

    @property
    def held(self) -> int:
        return len(self._held)

    def _take(self, turn: Turn, first: bool = False) -> None:
        with self._lock:
            # A thread coming back first (it holds the writer lock others wait for) may have a
            # lent slot at once: making it wait for overtime would hold up every writer.
            if (len(self._held) < self.prompt and not self._waiters) or (first and len(self._held) < self.count):
                self._held[turn] = time.monotonic()
                return
            if self.prompt < self.count:
                self._wake_keeper()  # before queueing: a keeper that cannot start leaves no waiter behind
            ready = threading.Lock()
            ready.acquire()
            if first:
                self._waiters.appendleft((ready, turn))
            else:
                self._waiters.append((ready, turn))
        ready.acquire()  # released by _give or the keeper, which hand this thread its slot

    def _give(self, turn: Turn) -> None:
        with self._lock:
            full = len(self._held) >= self.count
            del self._held[turn]
            if self._waiters and len(self._held) < self.prompt:
                self._hand_on()
            elif full and self._waiters:
                self._changed.notify()  # the keeper may lend the slot now

    def _hand_on(self) -> None:
        ready, turn = self._waiters.popleft()
        self._held[turn] = time.monotonic()
        ready.release()

    # -- lending (with self._lock held) ------------------------------------------------------------
    def _wake_keeper(self) -> None:
        if self._keeper is None:
            # Started by a request thread, it shares the request threads' core (adapters/cores.py).
            keeper = threading.Thread(target=self._keep, name="lobstore-work-slots", daemon=True)
            keeper.start()  # it waits for self._lock, held here, before it looks at anything
            self._keeper = keeper
        else:
            self._changed.notify()

    def _keep(self) -> None:
        """Lend a slot to the longest waiter whenever every held turn has run past overtime;
        end after a second with nobody waiting (the next waiter starts a keeper again)."""
        with self._lock:
            while True:
                if not self._waiters:
                    if not self._changed.wait(1.0) and not self._waiters:
                        self._keeper = None
                        return
                    continue
                if len(self._held) >= self.count:
                    self._changed.wait()
                    continue
                youngest = max(self._held.values(), default=0.0)
                due = youngest + self.overtime - time.monotonic()
                if due <= 0:
                    self._hand_on()
                else:
                    self._changed.wait(due)


class Turn:
    """One request's claim on a work slot: held or not, taken and given back as it goes."""

    def __init__(self, slots: WorkSlots) -> None:
        self._slots = slots
        self.held = False

    def take(self, first: bool = False) -> None:
        """Take the turn back (``first``: ahead of every waiter, for a thread that holds what
        others wait for, e.g. the writer lock)."""
        if not self.held:
            self._slots._take(self, first)
            self.held = True

    def give(self) -> None:
        if self.held:
            self.held = False
            self._slots._give(self)


def current_turn() -> Turn | None:
    """The turn of the request this thread serves (None outside a server)."""
    return _current.get()


@contextmanager
def waiting(*, then_first: bool = False) -> Iterator[None]:
    """Give this thread's turn back while the block waits (on the disk, a lock, another
    service, an event); take it again after — ahead of the other waiters with ``then_first``,
    when the block took something they wait for (the writer lock: holding it while queueing for
    a turn would make every writer wait for every reader). Does nothing where no turn is held."""
    turn = _current.get()
    if turn is None or not turn.held:
        yield
        return
    turn.give()
    try:
        yield
    finally:
        turn.take(then_first)


@contextmanager
def holding(lock: threading.Lock) -> Iterator[None]:
    """``with lock`` for a lock whose holder may be waiting (a token mint asking GitHub): when
    another thread holds it, wait for it without the turn, or the holder could find every slot
    taken by threads waiting for its lock, and never get one back to finish (a deadlock)."""
    if not lock.acquire(blocking=False):
        with waiting(then_first=True):  # holding it, go first: others wait for it
            lock.acquire()
    try:
        yield
    finally:
        lock.release()
