"""`lobstore serve` as a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

LOBSTORE = Path(sys.executable).with_name("lobstore")
START_TIMEOUT = 30  # seconds; generous, only a guard against hanging the suite


class Server:
    """``lobstore serve --port 0`` and the lines it logs."""

    def __init__(self, db_url: str, *args: str, wait: bool = True) -> None:
        self.proc = subprocess.Popen(
            [str(LOBSTORE), "serve", "--db", db_url, "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = 0
        if wait:
            self.ready()

    def ready(self) -> Server:
        """Wait for the line that says it serves (started with ``wait=False``)."""
        line = self.wait_for(r"serving .* on http://[0-9.]+:(\d+)")  # 127.0.0.1, or 0.0.0.0
        self.port = int(re.search(r":(\d+) ", line).group(1))
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str) -> str:
        while True:
            try:
                line = self._queue.get(timeout=START_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines}") from None
            if line is None:
                raise AssertionError(f"server ended before {pattern!r}: {self.lines}")
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def drain(self) -> list[str]:
        """Every line logged so far (those no ``wait_for`` has looked at yet too)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)  # keep the end for wait_for
                return self.lines
            self.lines.append(line)

    def request(self, method: str, path: str, body: object = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=START_TIMEOUT)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read())
        finally:
            conn.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=START_TIMEOUT)
        self.wait_for(r"\bstopped\b")
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


