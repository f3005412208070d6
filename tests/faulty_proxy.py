"""A loopback HTTP proxy that misbehaves on cue, for testing the client against a real server.

One request per connection. For each request it takes the next action of ``script`` (when the
script is empty, ``otherwise``):

- ``"forward"``: pass the request on and the answer back;
- ``"drop"``: pass the request on, let the server do the work, then close the connection
  without answering — the answer is lost after the server committed;
- a status such as ``503``: answer that status itself, with a JSON error, never reaching the server.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
IO_TIMEOUT = 30  # seconds; a guard, never reached by a passing test


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    idempotency_key: str | None
    action: str | int


class FaultyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.script: deque[str | int] = deque()
        self.otherwise: str | int = "forward"
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)  # so the accept loop notices close()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=IO_TIMEOUT)
        self._sock.close()

    def requests(self, method: str, path_end: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and s.path.endswith(path_end)]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IO_TIMEOUT)
            request = _read_request(conn)
            if request is None:
                return
            method, path, headers, body = request
            with self._lock:
                action = self.script.popleft() if self.script else self.otherwise
                self.seen.append(Seen(method, path, headers.get("idempotency-key"), action))
            if isinstance(action, int):
                payload = json.dumps({"error": f"the proxy answers {action}", "code": "proxy"}).encode()
                conn.sendall(_response(action, {"Content-Type": "application/json"}, payload))
                return
            upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=IO_TIMEOUT)
            try:
                forwarded = {k: v for k, v in headers.items() if k not in ("connection", "host", "content-length")}
                upstream.request(method, path, body=body, headers=forwarded)
                answer = upstream.getresponse()
                data = answer.read()
                answer_headers = {k: v for k, v in answer.getheaders()
                                  if k.lower() not in ("connection", "content-length", "transfer-encoding")}
            finally:
                upstream.close()
            if action == "drop":
                conn.shutdown(socket.SHUT_RDWR)  # the work is done; its answer never arrives
                return
            conn.sendall(_response(answer.status, answer_headers, data))


def _read_request(conn: socket.socket) -> tuple[str, str, dict[str, str], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_HEAD:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return method, path, headers, body


def _response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
