"""The server under hostile and clumsy clients, over raw loopback sockets: malformed requests
of every kind get a JSON 4xx (never a 500), idle and slow clients cannot take the workers,
heads and connections are capped, and no worker is held past the read deadline."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time

import pytest

from lobstore import open_store
from lobstore.adapters.http import make_app
from lobstore.adapters.httpserver import HardenedServer, ServerLimits

THREADS = 2
DEADLINE = 1.0  # seconds; short so the tests that wait for it stay quick
WAIT = 15.0  # a guard against hanging, never a timing assert


@pytest.fixture
def serve(tmp_path):
    """Start a real server on a free loopback port (``serve(**limits)``); stopped afterwards."""
    started = []

    def start(**limits) -> HardenedServer:
        store = open_store(f"sqlite:///{tmp_path / f'db{len(started)}.sqlite'}")
        store.tasks.create(name="seed", description="a task to read and change")
        options = {"threads": THREADS, "read_deadline": DEADLINE, "max_body": 64 * 1024, **limits}
        httpd = HardenedServer(("127.0.0.1", 0), make_app(store, max_body=options["max_body"]),
                               ServerLimits(**options))
        httpd.expiration_interval = 0.1
        httpd.prepare()
        threading.Thread(target=httpd.serve, daemon=True).start()
        httpd.port = httpd.bind_addr[1]
        started.append((httpd, store))
        return httpd

    yield start
    for httpd, store in started:
        httpd.stop()
        store.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def exchange(port: int, data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data``, say we are done writing, read every answer until the server closes."""
    with connect(port) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before taking it all (a head over its limit)
        return parse_answers(read_all(sock))


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def parse_answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    answers = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"an answer without a complete head: {raw[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        answers.append((status, headers, rest[:length]))
        raw = rest[length:]
    return [a for a in answers if a[0] != 100]  # an interim 100 Continue is not an answer


def assert_json_error(status: int, headers: dict[str, str], body: bytes, case: object) -> dict:
    assert headers.get("content-type", "").startswith("application/json"), (case, status, headers, body[:200])
    data = json.loads(body)
    assert isinstance(data.get("error"), str) and data["error"], (case, data)
    assert isinstance(data.get("code"), str) and data["code"], (case, data)
    return data


# -- the malformed-request suite --------------------------------------------------------------
WRITES = [
    ("POST", "/api/v1/tasks"), ("POST", "/api/tasks"), ("PATCH", "/api/v1/tasks/T1"), ("PATCH", "/api/tasks/T1"),
    ("DELETE", "/api/v1/tasks/T1"), ("POST", "/api/v1/tasks/T1/events"), ("POST", "/api/v1/costs"),
    ("POST", "/api/v1/costs/prices"), ("POST", "/api/v1/audits"), ("PATCH", "/api/v1/audits/1"),
    ("POST", "/api/v1/tasks/T1/register"), ("POST", "/api/tasks/T1/register"), ("DELETE", "/api/tasks/T1/register"),
    ("POST", "/api/v1/jobs/nightly/runs"), ("DELETE", "/api/v1/credentials/nobody"), ("POST", "/api/v1/credentials"),
]  # 16 write routes; not those that answer 503 here by design (no vault, no GitHub App, no job runner)
REQUEST_LINES = [
    b"GARBAGE", b"GET", b"GET /health", b"GET  /health HTTP/1.1", b"GET /health HTTP/1.1 extra",
    b"GET /health http/1.1", b"GET /health HTTP/1.x", b"GET /health HTTP/0.9", b"GET /health HTTP/2.0",
    b"GET /health HTTP/3", b"GET /health HTTP/1.1\x00", b"G\x00T /health HTTP/1.1", b"get /health HTTP/1.1",
    b"GET health HTTP/1.1", b"GET * HTTP/1.1", b"GET //// HTTP/1.1", b"GET /%zz HTTP/1.1", b"GET /%00 HTTP/1.1",
    b"GET /api/v1/tasks?%zz=%ff HTTP/1.1", b"GET http://x/health HTTP/1.1", b"GET http:// HTTP/1.1",
    b"GET /\xff\xfe HTTP/1.1", b"GET /" + b"a" * 70_000 + b" HTTP/1.1", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"PRI * HTTP/2.0\r\n\r\nSM", b"CONNECT x:443 HTTP/1.1", b"BREW /pot HTTP/1.1", b"X" * 300 + b" / HTTP/1.1",
    b"GET /health HTTP/1.1\n", b" GET /health HTTP/1.1", b"\tGET /health HTTP/1.1", b"GET\t/health\tHTTP/1.1",
]
HEADER_BLOCKS = [
    b"Host x", b": empty-name", b"Host: x\r\n continued", b"Bad Header: x", b"Host\x00: x", b"X: \x00\x01",
    b"X-A: b\nX-B: c", b"Host: x\rX: y", b"X: " + b"v" * 70_000, b"".join(b"X-%d: v\r\n" % n for n in range(150))[:-2],
    b"Content-Length: 5\r\nContent-Length: 7", b"Content-Length: -1", b"Content-Length: abc", b"Content-Length: 1e3",
    b"Content-Length: 99999999999999999999999", b"Content-Length: 0x10", b"Content-Length: 5, 5",
    b"Expect: 100-continue", b"Expect: teapot", b"Connection: upgrade\r\nUpgrade: h2c", b"Host: \xff\xfe",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5",
]
TRANSFER_ENCODINGS = [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity", b"deflate", b"br", b"compress",
                      b"chunked;x=1", b"x-custom"]
CHUNKED_BODIES = [
    b"ZZ\r\nabc\r\n0\r\n\r\n", b"-1\r\nabc\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n",
    b"3\r\nab", b"3\nabc\n0\n\n", b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", b"\r\n\r\n", b"3;\x00\r\nabc\r\n0\r\n\r\n",
    b"2\r\n{}\r\n0\r\nTrailer: x\r\n", b"10000\r\n" + b"x" * 10, b"",
]
CONTENT_LENGTHS = [b"abc", b"-1", b"1e3", b" 12", b"12, 13", b"99999999999999999999", b"+5", b"5\x00", b"", b"3"]


def malformed_cases() -> list[tuple[str, bytes]]:
    """(kind, bytes on the wire) for requests that must all be refused with a JSON error."""
    cases: list[tuple[str, bytes]] = []
    for line in REQUEST_LINES:
        cases.append(("request-line", line + b"\r\nHost: x\r\n\r\n"))
        cases.append(("request-line", line + b"\r\n\r\n"))
        cases.append(("request-line", line))  # and the client stops half-way
    for block, (method, path) in itertools.product(HEADER_BLOCKS, [("GET", "/api/v1/tasks/T1"), ("POST", "/api/v1/tasks")]):
        cases.append(("headers", f"{method} {path} HTTP/1.1\r\n".encode() + block + b"\r\n\r\n{}"))
    for (method, path), encoding in itertools.product(WRITES, TRANSFER_ENCODINGS):
        cases.append(("transfer-encoding", f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      .encode() + b"Transfer-Encoding: " + encoding + b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
    for (method, path), body in itertools.product(WRITES, CHUNKED_BODIES):
        cases.append(("chunked", f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n".encode() + body))
    for (method, path), length in itertools.product(WRITES, CONTENT_LENGTHS):
        cases.append(("content-length", f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      .encode() + b"Content-Length: " + length + b"\r\n\r\n{\"name\": \"x\"}"))
    return cases


def test_malformed_requests_get_json_errors_never_a_500(serve):
    httpd = serve()
    cases = malformed_cases()
    assert len(cases) >= 300
    statuses: dict[int, int] = {}
    for kind, data in cases:
        answers = exchange(httpd.port, data)
        assert answers, (kind, data[:200])
        for status, headers, body in answers:
            statuses[status] = statuses.get(status, 0) + 1
            assert status != 500, (kind, data[:200], body)
            # Only an unsupported Transfer-Encoding is answered from the 5xx family (501).
            assert status < 500 or (status == 501 and kind == "transfer-encoding"), (kind, data[:200], body)
            if status >= 300:
                assert_json_error(status, headers, body, (kind, data[:200]))
    assert statuses.get(400, 0) > 100 and 501 in statuses and 431 in statuses, statuses
    # Nothing was held: every worker is idle again, and the server answers at once.
    deadline = time.monotonic() + WAIT
    while httpd.requests.idle < THREADS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpd.requests.idle == THREADS
    assert exchange(httpd.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0][0] == 200


def test_what_cheroot_itself_answers_is_json_with_the_right_status(serve):
    httpd = serve()

    def first(data: bytes) -> tuple[int, dict]:
        status, headers, body = exchange(httpd.port, data)[0]
        return status, assert_json_error(status, headers, body, data[:100])

    post = b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    assert first(post + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nab\r\n0\r\n\r\n") == (
        400, {"error": "the chunked body cannot be read: Bad chunked transfer size: b'ZZ'", "code": "malformed"})
    status, data = first(post + b"Transfer-Encoding: gzip, chunked\r\n\r\n")
    assert (status, data["code"]) == (501, "unsupported_transfer_encoding")
    status, data = first(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert (status, data["code"]) == (400, "http_version_not_supported")
    status, data = first(post + b"Content-Length: abc\r\n\r\n")
    assert (status, data["code"]) == (400, "malformed")
    status, data = first(b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n")
    assert (status, data) == (431, {"error": "too many header lines: at most 100", "code": "headers_too_large"})
    status, data = first(post + b"Content-Length: 100\r\n\r\n{\"na")  # the client gave up
    assert (status, data["error"]) == (400, "the body ended after 4 of 100 bytes")
    status, data = first(post + b"Content-Length: 70000\r\n\r\n{}")
    assert (status, data["code"]) == (413, "too_large")


def test_a_short_body_is_answered_400_at_the_read_deadline_and_frees_the_worker(serve):
    httpd = serve(threads=1)
    with connect(httpd.port) as sock:
        sock.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"na")  # ... and nothing more, the socket kept open
        status, headers, body = parse_answers(read_all(sock))[0]
    data = assert_json_error(status, headers, body, "short body")
    assert status == 400 and data["error"] == f"the body ended after 4 of 100 bytes within the {DEADLINE:g} s read deadline"
    # The one worker is free again.
    assert exchange(httpd.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0][0] == 200


# -- idle and slow clients, heads, the connection cap ------------------------------------------
def get(port: int, path: str) -> int:
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())[0][0]


def test_idle_and_slow_clients_do_not_take_the_workers(serve):
    httpd = serve(threads=2, read_deadline=5.0)
    idle = [connect(httpd.port) for _ in range(64)]
    slow = [connect(httpd.port) for _ in range(16)]
    stop = threading.Event()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

    def dribble() -> None:  # one byte per socket every 0.1 s: none finishes its head for 3.5 s
        for n in range(len(request) - 2):
            if stop.wait(0.1):
                return
            for sock in slow:
                sock.send(request[n:n + 1])

    writer = threading.Thread(target=dribble)
    writer.start()
    try:
        time.sleep(0.3)
        for _ in range(10):  # two workers serve them all while 80 clients hold connections
            assert get(httpd.port, "/health") == 200
            assert get(httpd.port, "/api/v1/tasks/T1") == 200
    finally:
        stop.set()
        writer.join()
        for sock in idle + slow:
            sock.close()


def test_a_head_still_incomplete_at_the_deadline_is_answered_408(serve):
    httpd = serve()
    with connect(httpd.port) as sock:
        sock.sendall(b"GET /hea")
        status, headers, body = parse_answers(read_all(sock))[0]
    assert status == 408 and assert_json_error(status, headers, body, "slow head")["code"] == "request_timeout"


def test_an_endless_head_is_refused_with_431_and_not_kept(serve):
    httpd = serve(max_head=16 * 1024)
    with connect(httpd.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 50 * 1024 * 1024:  # the server answers and closes long before
                sent += sock.send(b"a" * 65536)
        except OSError:
            pass
        status, headers, body = parse_answers(read_all(sock))[0]
    assert status == 431 and assert_json_error(status, headers, body, "endless head")["code"] == "headers_too_large"
    assert sent < 50 * 1024 * 1024


def test_past_the_connection_cap_a_client_gets_503_json(serve):
    httpd = serve(max_connections=8)
    held = [connect(httpd.port) for _ in range(8)]
    try:
        with connect(httpd.port) as extra:
            status, headers, body = parse_answers(read_all(extra))[0]
        data = assert_json_error(status, headers, body, "over the cap")
        assert status == 503 and re.search(r"too many open connections \(at most 8\)", data["error"])
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + WAIT
    while httpd.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get(httpd.port, "/health") == 200


def test_keep_alive_and_pipelined_requests_still_work(serve):
    httpd = serve()
    two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/tasks/T1 HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = exchange(httpd.port, two)
    assert [a[0] for a in answers] == [200, 200] and json.loads(answers[1][2])["task_id"] == "T1"
    body = b'{"name": "chunked"}'
    chunked = (b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    status, _, created = exchange(httpd.port, chunked)[0]
    assert status == 201 and json.loads(created)["name"] == "chunked"


def test_a_lone_surrogate_in_a_job_runs_output_is_kept_as_a_replacement_character(serve):
    httpd = serve()
    body = b'{"status": "failed", "output": "line one\\n\\ud800 broken"}'
    status, _, answer = exchange(httpd.port, b"POST /api/v1/jobs/nightly/runs HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)[0]
    assert status == 201 and json.loads(answer)["last_output"] == "line one\n\ufffd broken"


def test_a_body_whose_length_is_said_twice_is_refused_and_nothing_is_smuggled(serve):
    """Two Content-Lengths, or one beside Transfer-Encoding: a proxy may read the other one, and
    the rest would be served as a second request (request smuggling). 400, and the connection
    closes, so the smuggled request is never answered."""
    httpd = serve()
    smuggled = b"GET /api/v1/tasks/T1 HTTP/1.1\r\nHost: x\r\n\r\n"
    post = b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    both = (post + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(smuggled))
            + smuggled)
    twice = post + b"Content-Length: %d\r\nContent-Length: 0\r\n\r\n" % len(smuggled) + smuggled
    for case in (both, twice):
        answers = exchange(httpd.port, case)
        assert [status for status, _, _ in answers] == [400], case
        status, headers, body = answers[0]
        assert "Content-Length" in assert_json_error(status, headers, body, case)["error"]
