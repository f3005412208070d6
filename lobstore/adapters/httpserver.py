"""The HTTP server under the API: cheroot, hardened so clients cannot take it down.

- A worker thread gets a connection only once a whole request head has arrived. The head is
  read without blocking by the one thread that watches sockets (cheroot's connection
  manager), so idle and slow clients (one byte a second) hold a socket, never a worker; the
  pool is sized for work (few threads) and connections for the fleet (many).
- One deadline for head and body together (``read_deadline`` from the first byte): a head
  that is not complete by then is answered 408; a body still short then is cut off (its socket
  shut for reading) and answered 400. The body is read, within its cap, before the app runs,
  so a handler never waits on a client.
- Limits: the head's size (431, memory stays bounded: at most ``max_head`` bytes are kept per
  connection) and its number of header lines (431), the body (413), open connections (503).
- Every answer cheroot makes itself (a malformed request line, bad chunking, an unsupported
  Transfer-Encoding, HTTP/2's preface...) is JSON ``{"error", "code"}`` like the API's own.
"""

from __future__ import annotations

import io
import json
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from cheroot import errors, server, wsgi
from cheroot.connections import ConnectionManager

from ..work import WorkSlots, current_turn, waiting
from .cores import ServingCore

MAX_CONNECTIONS = 1024  # open connections (idle keep-alive ones included); the next gets a 503
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
MAX_HEADER_LINES = 100
READ_DEADLINE = 10.0  # seconds from a request's first byte until its head and body are in
IDLE_TIMEOUT = 60.0  # seconds an idle keep-alive connection is kept
LISTEN_BACKLOG = 256  # cheroot's default of 5 drops SYNs in a connection burst (retried a second later)
_HEAD_END = b"\r\n\r\n"
_RECV = 64 * 1024

# cheroot's own answers, as the API names them.
CODES = {
    400: "malformed", 404: "no_route", 405: "method_not_allowed", 408: "request_timeout",
    411: "length_required", 413: "too_large", 414: "uri_too_long", 431: "headers_too_large",
    500: "internal", 501: "unsupported_transfer_encoding", 503: "unavailable",
}


def cpu_work_slots() -> int:
    """Requests that run at once where they are all CPU: one per core, at least two (work.py)."""
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class ServerLimits:
    threads: int = 8  # requests in progress at once (serve's --threads), waiting ones included
    work_slots: int = field(default_factory=cpu_work_slots)  # of those, working at once (work.py)
    prompt_slots: int | None = None  # of the work slots, given without waiting for overtime (None: all)
    max_connections: int = MAX_CONNECTIONS
    max_head: int = MAX_HEAD_BYTES
    max_header_lines: int = MAX_HEADER_LINES
    max_body: int = 1024 * 1024
    read_deadline: float = READ_DEADLINE
    idle_timeout: float = IDLE_TIMEOUT


def error_bytes(status: int, message: str, *, kind: str | None = None) -> bytes:
    """A whole HTTP/1.1 answer carrying ``{"error", "code"}`` (``kind``: the code, if not the
    status's own); the connection is closed after it."""
    body = json.dumps({"error": message, "code": kind or CODES.get(status, "http_error")}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


class _Headers(server.HeaderReader):
    """cheroot's header reader with a cap on the number of lines, refusing a body whose length
    is said twice: two Content-Lengths, or one beside Transfer-Encoding. A proxy in front may
    read the other one, and then the rest of the body would be served as a second request
    (request smuggling). cheroot answers the ValueError with a 400 and closes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, rfile: Any, hdict: Any = None) -> Any:
        lines = _CountingLines(rfile, self.limit)
        headers = super().__call__(lines, hdict)
        if lines.content_lengths > 1:
            raise ValueError("more than one Content-Length header")
        if b"Content-Length" in headers and b"Transfer-Encoding" in headers:
            raise ValueError("both Content-Length and Transfer-Encoding: send one of them")
        return headers


class _CountingLines:
    def __init__(self, rfile: Any, limit: int) -> None:
        self.rfile, self.limit, self.left = rfile, limit, limit + 1  # + the blank line ending the head
        self.content_lengths = 0

    def readline(self, size: int | None = None) -> bytes:
        self.left -= 1
        if self.left < 0:  # cheroot answers a ValueError with a 400; simple_response makes it 431
            raise ValueError(f"too many header lines: at most {self.limit}")
        line = self.rfile.readline() if size is None else self.rfile.readline(size)
        if line[:15].lower() == b"content-length:":
            self.content_lengths += 1
        return line


class _Collected:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class JsonRequest(server.HTTPRequest):
    """cheroot's request with its own answers in JSON, and an answer's head sent in the same
    write as the first piece of its body (one send, not two, per answer)."""

    held = b""

    def __init__(self, srv: Any, conn: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(srv, conn, *args, **kwargs)
        self.header_reader = srv.header_reader  # with the server's cap on header lines

    def send_headers(self) -> None:
        wfile, self.conn.wfile = self.conn.wfile, _Collected()
        try:
            super().send_headers()
        finally:
            self.held, self.conn.wfile = self.conn.wfile.data, wfile

    def write(self, chunk: bytes) -> None:
        head, self.held = self.held, b""
        if self.chunked_write and chunk:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        self.conn.wfile.write(head + chunk)

    def send_held(self) -> None:
        """The head of an answer without a body (or with an empty one)."""
        if self.held:
            head, self.held = self.held, b""
            self.conn.wfile.write(head)

    def simple_response(self, status: Any, msg: Any = "") -> None:
        code = int(str(status)[:3])
        text = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg or "")
        kind = "http_version_not_supported" if code == 505 else None
        if code == 400 and "too many header lines" in text:
            code = 431
        elif code == 413 and "headers" in text:
            code, text = 431, f"the request head is over {self.server.limits.max_head} bytes"
        elif code == 414:
            text = f"the request line is over {self.server.limits.max_head} bytes"
        elif code == 413:
            text = f"the body is over {self.server.limits.max_body} bytes"
        elif code == 501:
            text = "unsupported Transfer-Encoding: only chunked is understood"
        elif code == 505:  # HTTP/2's preface among them: a client error, not the server's
            code, text = 400, "HTTP version not supported: speak HTTP/1.0 or HTTP/1.1"
        elif code == 408:
            text = f"the request did not arrive within {self.server.limits.read_deadline:g} s"
        elif not text:
            text = str(status)[4:] or "bad request"
        if code >= 400:
            self.close_connection = True
        try:
            self.conn.wfile.write(error_bytes(code, text, kind=kind))
        except OSError as exc:
            if exc.args[0] not in errors.socket_errors_to_ignore:
                raise


class Connection(server.HTTPConnection):
    RequestHandlerClass = JsonRequest
    started = 0.0  # monotonic time of the current request's first byte (0: between requests)
    cut = False  # the read deadline passed and the socket was shut for reading
    closed = False

    def head_ready(self) -> bool:
        rfile = self.rfile
        return _HEAD_END in rfile._read_buf[rfile._read_pos:]

    def buffered(self) -> int:
        return len(self.rfile._read_buf) - self.rfile._read_pos

    def take(self, data: bytes) -> None:
        """Add bytes read by the socket watcher to what cheroot will read."""
        rfile = self.rfile
        rfile._read_buf = rfile._read_buf[rfile._read_pos:] + data
        rfile._read_pos = 0

    def communicate(self) -> bool:
        # One request, in a work turn (lobstore/work.py) from its head to its answer.
        with self.server.work.turn():
            keep = super().communicate()
        self.started, self.cut = 0.0, False
        return keep

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.connection_closed()
        super().close()


class Gateway(wsgi.Gateway_10):
    """Reads the body (within its cap and the read deadline) before the app runs; the app runs
    in the request's work turn, which is given back while the body is read and the answer written."""

    def __init__(self, req: Any) -> None:
        self.body = b""
        super().__init__(req)

    def respond(self) -> None:
        req = self.req
        failure = self.read_body()
        if failure is not None:
            req.simple_response(*failure)
            req.ready = False
            return
        self.env["wsgi.input"] = io.BytesIO(self.body)
        response = req.server.wsgi_app(self.env, self.start_response)
        turn = current_turn()
        if turn is not None:
            turn.give()  # the answer is made; a client slow to read it holds up no one
        try:
            for chunk in filter(None, response):
                if not isinstance(chunk, bytes):
                    raise ValueError("WSGI applications must yield bytes")
                self.write(chunk)
        finally:
            req.ensure_headers_sent()
            if hasattr(response, "close"):
                response.close()
        req.send_held()

    def read_body(self) -> tuple[str, str] | None:
        req, conn, srv = self.req, self.req.conn, self.req.server
        expected = None if req.chunked_read else int(req.inheaders.get(b"Content-Length", 0) or 0)
        if expected == 0:
            return None
        srv.watch_body(conn)
        try:
            with waiting():  # the client sends the body at its pace: no one waits for it
                data = req.rfile.read() if expected is None else req.rfile.read(expected)
        except errors.MaxSizeExceeded:
            return "413", ""
        except OSError as exc:
            if "Request Entity Too Large" in str(exc):
                return "413", ""
            if conn.cut or isinstance(exc, socket.timeout):
                return "400", self._short("the body", srv)
            raise
        except ValueError as exc:  # cheroot's ChunkedRFile: a bad chunk size or framing
            if conn.cut:
                return "400", self._short("the chunked body", srv)
            return "400", f"the chunked body cannot be read: {exc}"[:300]
        finally:
            srv.unwatch_body(conn)
        if expected is not None and len(data) < expected:
            why = f" within the {srv.limits.read_deadline:g} s read deadline" if conn.cut else ""
            return "400", f"the body ended after {len(data)} of {expected} bytes{why}"
        if expected is None and conn.cut:
            return "400", self._short("the chunked body", srv)
        if len(data) > srv.limits.max_body:
            return "413", ""
        self.body = data
        return None

    @staticmethod
    def _short(what: str, srv: Any) -> str:
        return f"{what} did not arrive within the {srv.limits.read_deadline:g} s read deadline"

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        env["wsgi.input_terminated"] = True  # the body is read already
        return env


class Intake(ConnectionManager):
    """cheroot's connection manager, handing a connection to a worker only with a whole head."""

    def __init__(self, srv: Any) -> None:
        super().__init__(srv)
        self._lock = threading.Lock()

    def _from_server_socket(self, server_socket: Any) -> None:
        conn = super()._from_server_socket(server_socket)
        if conn is None:
            return None
        if not self.server.connection_opened():
            _send_quietly(conn.socket, error_bytes(
                503, f"too many open connections (at most {self.server.limits.max_connections}): retry later"))
            conn.closed = True  # never counted
            conn.close()
            return None
        self.wait_for_head(conn)
        return None  # the base loop would hand it to a worker at once

    def put(self, conn: Any) -> None:
        conn.last_used = time.time()
        if conn.head_ready():  # a pipelined request is already buffered
            self.server.hand_over(conn)
        else:
            self.wait_for_head(conn)

    def wait_for_head(self, conn: Any) -> None:
        conn.last_used = time.time()
        self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)

    def _expire(self, threshold: float) -> None:
        super()._expire(threshold)
        limits = self.server.limits
        late = time.monotonic() - limits.read_deadline
        for fd, conn in list(self._selector.connections):
            if conn is self.server or not conn.started or conn.started > late:
                continue
            self._selector.unregister(fd)
            _send_quietly(conn.socket, error_bytes(408, f"the request head did not arrive within "
                                                        f"{limits.read_deadline:g} s"))
            conn.close()
        self.server.cut_late_bodies(late)


class HardenedServer(wsgi.Server):
    """cheroot's WSGI server with :class:`Intake`, JSON errors and the limits above."""

    ConnectionClass = Connection

    def __init__(self, bind_addr: Any, app: Any, limits: ServerLimits, *, core: ServingCore | None = None,
                 **options: Any) -> None:
        options.setdefault("request_queue_size", LISTEN_BACKLOG)
        super().__init__(bind_addr, app, numthreads=limits.threads, max=limits.threads,
                         timeout=limits.idle_timeout, **options)
        self.limits = limits
        self.core = core  # the one core the serving threads share (cores.py); None: any core
        self.work = WorkSlots(min(limits.work_slots, limits.threads), prompt=limits.prompt_slots)
        self.gateway = Gateway
        self.max_request_header_size = limits.max_head
        self.max_request_body_size = limits.max_body
        self.keep_alive_conn_limit = None  # the connection cap bounds them
        self.header_reader = _Headers(limits.max_header_lines)
        self._open = 0
        self._bodies: dict[Any, float] = {}
        self._count_lock = threading.Lock()

    def prepare(self) -> None:
        super().prepare()
        self._connections._selector.close()  # cheroot's own manager: replaced before serving
        self._connections = Intake(self)
        if self.core is not None:
            for worker in self.requests._threads:  # started by now; the pool never grows (min = max)
                self.core.join(worker.native_id)

    def serve(self) -> None:
        if self.core is not None:
            self.core.join()  # the socket watcher runs on the thread that serves
        super().serve()

    # -- the connection count ------------------------------------------------------------------
    def connection_opened(self) -> bool:
        with self._count_lock:
            if self._open >= self.limits.max_connections:
                return False
            self._open += 1
            return True

    def connection_closed(self) -> None:
        with self._count_lock:
            self._open -= 1

    @property
    def open_connections(self) -> int:
        return self._open

    # -- heads ------------------------------------------------------------------------------------
    def process_conn(self, conn: Any) -> None:
        """Called by the socket watcher when ``conn`` is readable: read what is there, and hand
        the connection to a worker once its head is complete."""
        if conn.head_ready():
            return self.hand_over(conn)
        try:
            data = conn.socket.recv(_RECV, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return self._connections.wait_for_head(conn)
        except OSError:
            return conn.close()
        if not data:  # the client left, perhaps half-way through a head
            if conn.buffered():
                _send_quietly(conn.socket, error_bytes(400, "the request head ended before its blank line"))
            return conn.close()
        if not conn.started:
            conn.started = time.monotonic()
        conn.take(data)
        if conn.head_ready():
            return self.hand_over(conn)
        if conn.buffered() > self.limits.max_head:
            _send_quietly(conn.socket, error_bytes(431, f"the request head is over {self.limits.max_head} bytes"))
            return conn.close()
        self._connections.wait_for_head(conn)

    def hand_over(self, conn: Any) -> None:
        if not conn.started:
            conn.started = time.monotonic()
        super().process_conn(conn)

    # -- bodies -----------------------------------------------------------------------------------
    def watch_body(self, conn: Any) -> None:
        with self._count_lock:
            self._bodies[conn] = conn.started or time.monotonic()

    def unwatch_body(self, conn: Any) -> None:
        with self._count_lock:
            self._bodies.pop(conn, None)

    def cut_late_bodies(self, late: float) -> None:
        """Shut a late body's socket for reading: the worker's read returns at once."""
        with self._count_lock:
            overdue = [conn for conn, started in self._bodies.items() if started <= late]
            for conn in overdue:
                del self._bodies[conn]
        for conn in overdue:
            conn.cut = True
            try:
                conn.socket.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def _send_quietly(sock: Any, data: bytes) -> None:
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except OSError:
        pass  # polite, not promised: the client may be gone or not reading
