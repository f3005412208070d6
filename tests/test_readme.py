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


def test_costs_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "store.costs" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README costs example", "exec"), {})
    assert out.getvalue().splitlines() == ["0.0135 computed", "0.0175", "1", "['T2'] T2"]
