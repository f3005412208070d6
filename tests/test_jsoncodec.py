"""The fast JSON path (orjson, the ``fast`` extra) writes and reads exactly what the standard
library does, so a server with or without it answers the same bytes."""

from __future__ import annotations

import pytest

from lobstore import jsoncodec, open_store

SAMPLES = [
    {"error": "no such task 'T9'", "code": "not_found"},
    {"name": "naïve — 💥", "tags": ["a", "b"], "n": 1.5, "big": 2**63 - 1, "none": None, "ok": True},
    {"nested": {"a": [1, {"b": []}]}, "empty": {}, "text": "line\nquote\" back\\slash \u2028"},
    {"error": "unknown field '\ud800'", "code": "invalid"},  # a lone surrogate echoed back
    {"huge": 2**70},  # beyond 64 bits
    [],
]


@pytest.mark.skipif(jsoncodec.orjson is None, reason="the fast extra is not installed")
@pytest.mark.parametrize("data", SAMPLES)
def test_answers_are_the_same_bytes_with_and_without_orjson(data):
    assert jsoncodec.dumps(data) == jsoncodec.dumps_stdlib(data)


@pytest.mark.parametrize("text", ['[]', '{}', '["acme/web"]', '{"a": {"b": [1, 2.5, null]}}', '"x"',
                                  '{"z": 12345678901234567890123}', '[-9223372036854775809]', '[18446744073709551616]'])
def test_stored_json_reads_the_same(text):
    assert jsoncodec.loads(text) == jsoncodec.loads_stdlib(text)
    assert jsoncodec.loads(text.encode()) == jsoncodec.loads_stdlib(text)


def test_a_huge_integer_in_metadata_comes_back_exact(store):
    task = store.tasks.create(name="big", metadata={"z": 12345678901234567890123})
    assert store.tasks.get(task.ref).metadata == {"z": 12345678901234567890123}


def test_a_task_lists_the_same_with_either_encoder():
    with open_store("sqlite://") as store:
        task = store.tasks.create(name="Fix — login", repos=["acme/web"], tags=["x"], metadata={"k": [1]})
        store.tasks.update(task.ref, status="active")
        data = [t.to_dict() for t in store.tasks.list()]
    assert jsoncodec.dumps(data) == jsoncodec.dumps_stdlib(data)
    assert data[0]["repos"] == ["acme/web"] and data[0]["metadata"] == {"k": [1]}
