"""One run of a job: a child process in a process group of its own, its output's tail, and a
kill of the whole group on timeout or shutdown.

- The child starts a new session (``start_new_session``), so its process group holds it and
  everything it starts (unless one of those leaves the group on purpose). A timeout or an
  interrupt kills the group with SIGKILL: a shell's children die with the shell.
- When the main process ends, what is left of its group (``cmd &`` in a shell line) is killed
  too: a run ends when its command ends, and nothing it started outlives it. The group is
  killed before the main process is reaped, so its id cannot have been reused meanwhile.
- stdout and stderr go to one pipe. Only the tail is kept while reading (at most
  :data:`TAIL_BYTES`, counting the lines dropped), so a chatty job costs bounded memory. Bytes
  that are not UTF-8 become U+FFFD, so what is stored is always valid text.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..repositories.jobs import MAX_OUTPUT_CHARS

log = logging.getLogger(__name__)

# Enough bytes for the 64 KiB-character tail the store keeps, at up to 4 bytes a character.
TAIL_BYTES = 4 * MAX_OUTPUT_CHARS
POLL = 0.25  # s between checks of the deadline and the main process while output is quiet
DRAIN = 2.0  # s to wait for the pipe to close after the group was killed


@dataclass(frozen=True)
class RunResult:
    status: str  # success, failed, timeout, error, interrupted
    exit_code: int | None  # negative: killed by that signal
    duration: float  # seconds
    output: str  # stdout and stderr, at most TAIL_BYTES of their end (the store keeps 200 lines)
    earlier_lines: int = 0  # lines of output that came before ``output``


class TailBuffer:
    """The last :data:`TAIL_BYTES` of a stream, and how many lines were dropped before them."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._dropped_lines = 0
        self._cut = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        excess = len(self._buffer) - self.limit
        if excess > 0:
            self._dropped_lines += self._buffer.count(b"\n", 0, excess)
            del self._buffer[:excess]
            self._cut = True

    def text(self, *notes: str) -> tuple[str, int]:
        """The tail as text, then ``notes`` as last lines; and how many lines came before it
        (the store keeps the last 200 lines and counts the rest: ``output_tail``)."""
        data = bytes(self._buffer)
        dropped = self._dropped_lines
        if self._cut:  # the first line was cut part-way: drop the rest of it
            newline = data.find(b"\n")
            data = data[newline + 1:] if newline != -1 else b""
            dropped += 1
        text = data.decode("utf-8", errors="replace").rstrip("\n")
        if notes:
            text = "\n".join(([text] if text else []) + list(notes))
        return text, dropped


class ChildRun:
    """Runs ``argv`` to the end (:meth:`run`, on the caller's thread); :meth:`interrupt` from
    another thread kills it."""

    def __init__(self, argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float) -> None:
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.timeout = timeout
        self.pid: int | None = None
        self._interrupted = threading.Event()
        self._interrupt_note = "interrupted"

    def interrupt(self, note: str) -> None:
        """Kill the run's process group now; the run ends ``interrupted`` with ``note``."""
        self._interrupt_note = note
        self._interrupted.set()
        if self.pid is not None:
            _kill_group(self.pid)

    def run(self) -> RunResult:
        began = time.monotonic()
        tail = TailBuffer()
        try:
            proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        except OSError as exc:  # no such program, not executable, the folder is gone
            return RunResult("error", None, time.monotonic() - began,
                             f"cannot start {self.argv[0]!r} in {self.cwd}: {exc.strerror or exc}")
        self.pid = proc.pid
        if self._interrupted.is_set():  # interrupted while it started
            _kill_group(proc.pid)
        deadline = began + self.timeout
        timed_out = False
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        exit_watch = _exit_watch(proc.pid)
        pipe_open, exited, exited_at = True, False, None
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ, "output")
            if exit_watch is not None:
                selector.register(exit_watch, selectors.EVENT_READ, "exit")
            while pipe_open or exited_at is None:
                now = time.monotonic()
                if not timed_out and not self._interrupted.is_set() and now >= deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                if exited_at is not None and now - exited_at > DRAIN:
                    # Something that left the group still holds the pipe: stop reading it.
                    log.warning("job process %d ended but its output stayed open (a process outside its "
                                "group holds it); not waiting for it", proc.pid)
                    break
                wait = POLL if timed_out or exited_at is not None else min(POLL, max(0.0, deadline - now))
                for key, _events in selector.select(wait):
                    if key.data == "output":
                        try:
                            data = os.read(fd, 65536)
                        except BlockingIOError:
                            continue
                        if data:
                            tail.feed(data)
                        else:  # every writer closed the pipe
                            pipe_open = False
                            selector.unregister(fd)
                    else:
                        selector.unregister(exit_watch)
                        exited = True
                if exited_at is None and (exited or (exit_watch is None and _has_exited(proc.pid))):
                    exited_at = time.monotonic()
                    _kill_group(proc.pid)  # what it left behind in its group ends with it
        if exit_watch is not None:
            os.close(exit_watch)
        proc.stdout.close()
        _kill_group(proc.pid)
        code = proc.wait()
        duration = time.monotonic() - began
        if self._interrupted.is_set():
            return RunResult("interrupted", code, duration, *tail.text(f"[{self._interrupt_note}]"))
        if timed_out:
            return RunResult("timeout", code, duration,
                             *tail.text(f"[timed out after {self.timeout:g} s: its process group was killed]"))
        return RunResult("success" if code == 0 else "failed", code, duration, *tail.text())


def _exit_watch(pid: int) -> int | None:
    """A descriptor that becomes readable when the process ends (Linux 5.3+), so the end of a
    run is seen at once instead of by polling; None where the system has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    """Whether the process has ended, without reaping it (its id stays reserved meanwhile)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already
