"""Background threads run on any core.

``lobstore serve`` keeps its request threads on one core (adapters/cores.py). Linux gives a new
thread the CPUs of the thread that starts it, and a process the CPUs of the thread that starts
it: a background thread first started by a request (PostgreSQL's change notifier starts on the
first write) would share the request threads' core for good, and so would every process it
started. So background threads start with :func:`background_thread`, which first gives the
thread every CPU the process may use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

PINNABLE = hasattr(os, "sched_setaffinity")  # Linux; elsewhere the kernel places every thread


def process_cpus() -> frozenset[int]:
    """The CPUs this process may use: its main thread's, which is never pinned."""
    return frozenset(os.sched_getaffinity(os.getpid())) if PINNABLE else frozenset()


def run_anywhere() -> None:
    """Let the calling thread run on every CPU the process may use."""
    if not PINNABLE:
        return
    cpus = process_cpus()
    try:
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)
    except OSError:  # a cpuset that changed under us: the thread keeps what it has
        pass


def background_thread(target: Callable[..., Any], *, name: str, args: tuple[Any, ...] = ()) -> threading.Thread:
    """A daemon thread (not started) running ``target(*args)`` on any core."""
    def run() -> None:
        run_anywhere()
        target(*args)

    return threading.Thread(target=run, name=name, daemon=True)
