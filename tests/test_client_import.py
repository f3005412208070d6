"""The client is stdlib-only: a lobster image without SQLAlchemy (or any other third-party
package) imports ``lobstore.client`` and uses it.

The child process runs without site-packages (``-S``), with only the source tree on its path,
and with a meta-path finder that refuses every top-level module outside the standard library:
whatever pulls in SQLAlchemy, Bottle, PyYAML and the like fails the import, as it would on
such an image.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class StdlibOnly(importlib.abc.MetaPathFinder):
        # The package under test and the standard library; nothing else.
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top == "lobstore" or top in sys.stdlib_module_names:
                return None
            raise ImportError(f"{name} is not in the standard library (blocked for this test)", name=name)

    sys.meta_path.insert(0, StdlibOnly())
    sys.path.insert(0, ROOT)
    out = {}

    import lobstore
    from lobstore.client import Client, Queued, UnavailableError

    client = Client(URL, outbox=OUTBOX, retries=0, timeout=2, actor="lobster-swe-t1")
    try:
        client.get_task("T1")
        out["read"] = "answered"
    except UnavailableError as exc:
        out["read"] = f"UnavailableError: {exc}"
    queued = client.update_task("T1", status="active", defer=True)
    out["write"] = type(queued).__name__
    out["pending"] = client.outbox.pending()
    out["version"] = lobstore.__version__
    out["third_party"] = sorted(
        name for name in sys.modules
        if name.partition(".")[0] not in (*sys.stdlib_module_names, "lobstore", "__main__")
    )

    # The guard is real: SQLAlchemy cannot be imported here, and the store needs it.
    for probe in ("sqlalchemy", "lobstore.store"):
        try:
            __import__(probe)
            out[probe] = "imported"
        except ImportError as exc:
            out[probe] = f"ImportError: {exc}"
    print(json.dumps(out))
    """
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_the_client_imports_and_works_without_sqlalchemy_or_any_third_party_package(tmp_path):
    setup = f"ROOT = {str(ROOT)!r}; URL = 'http://127.0.0.1:{closed_port()}'; OUTBOX = {str(tmp_path / 'outbox.db')!r}\n"
    done = subprocess.run(
        [sys.executable, "-S", "-c", setup + CHILD], capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["sqlalchemy"].startswith("ImportError"), out
    assert out["lobstore.store"].startswith("ImportError"), out
    assert out["read"].startswith("UnavailableError"), out
    assert out["write"] == "Queued"
    assert out["pending"] == 1
    assert out["version"]
    assert out["third_party"] == []
