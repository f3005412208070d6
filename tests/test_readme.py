"""The README's library quickstart must run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quickstart_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python block"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README quickstart", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "T1 queued"
    assert lines[1] == "[]"
    assert [line.split()[0] for line in lines[2:6]] == ["created", "updated", "note", "updated"]
    assert lines[6] == "['T1']"
    assert lines[7] == "T1"


def test_the_curl_session_answers_as_shown():
    """Each `$ curl` of the README's HTTP section, sent to the app: the answer holds every
    fragment shown (the README elides the rest with `...`)."""
    import shlex

    from lobstore import open_store
    from lobstore.adapters.http import make_app
    from wsgi_client import WsgiClient

    text = README.read_text(encoding="utf-8").replace("\\\n", " ")
    session = re.findall(r"^\$ (curl .*)\n(.*)$", text, re.M)
    assert len(session) >= 4, "README has no curl session"
    with open_store("sqlite://") as store:
        client = WsgiClient(make_app(store))
        store.set_token_provider(_ExampleProvider())  # the token example; GitHub's is tested in test_github
        for command, shown in session:
            args = shlex.split(command)
            method = args[args.index("-X") + 1] if "-X" in args else "GET"
            url = next(a for a in args if a.startswith("localhost:8081"))
            headers = dict(h.split(": ", 1) for i, h in enumerate(args) if i and args[i - 1] == "-H")
            data = args[args.index("-d") + 1].encode() if "-d" in args else None
            response = client.request(method, url.removeprefix("localhost:8081"), body=data,
                                      content_type=headers.pop("Content-Type", None), headers=headers)
            position = 0
            for fragment in (f.strip(",") for f in shown.split("...")):
                found = response.body.decode().find(fragment, position)
                assert found >= 0, f"{command}: {fragment!r} not in {response.body!r}"
                position = found + len(fragment)


class _ExampleProvider:
    def issue(self, repos):
        from datetime import datetime, timedelta, timezone

        from lobstore import IssuedToken

        return IssuedToken("ghs_example", datetime.now(timezone.utc) + timedelta(hours=1))


def test_costs_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "store.costs" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README costs example", "exec"), {})
    assert out.getvalue().splitlines() == ["0.0135 computed", "0.0175", "1", "['T2'] T2"]
