"""The HTTP app on cheroot in this process, on a loopback port: for streams and browsers."""

from __future__ import annotations

import socket
import threading
from typing import Any

from cheroot import wsgi

from lobstore.adapters.http import make_app


class LiveServer:
    """``make_app(store, **options)`` served on 127.0.0.1 (``port=0``: a free one)."""

    def __init__(self, store: Any, *, port: int = 0, threads: int = 16, **options: Any) -> None:
        self.store = store
        self.app = make_app(store, **options)
        self.server = wsgi.Server(("127.0.0.1", port), self.app, numthreads=threads, max=threads,
                                  shutdown_timeout=5)
        self.server.prepare()
        self.port = self.server.bind_addr[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """As `lobstore serve` stops: streams end first, then the server."""
        self.store.backend.changes.close()
        self.server.stop()
        self._thread.join(10)


class Forwarder:
    """A TCP port that pipes each connection to ``target()``'s port at the time it connects:
    one address for clients while the server behind it restarts on another port."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target()))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
