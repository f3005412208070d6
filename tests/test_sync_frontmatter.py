"""Frontmatter handling: only the store's keys change; everything else keeps its bytes."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest
import yaml

from lobstore.sync.frontmatter import (
    FrontmatterError,
    format_entry,
    format_scalar,
    parse,
    set_keys,
    split,
    update_keys,
)

NASTY = [
    "Fix: login # bug", "@lobboss please", "no", "No", "yes", "off", "on", "y", "n", "null", "~",
    "true", "2026-02-16", "2026-02-16T12:00:00Z", "0o17", "0x1F", "1_000", "1e3", ".inf", "-1",
    "- a list?", "[not, a, list]", "{nor: a map}", "a: b", "key:value", "#tag", "it's", 'say "hi"',
    "back\\slash", " leading", "trailing ", "two\nlines", "tab\there", "x\u2028y", "nel\x85",
    "🦞 lobster", "\ufeffbom", "&anchor", "*alias", "!tag", "%directive", "|", ">", "`code`",
    "", " ", "?", "Unity UI overhaul", "café crème", "T42",
]


@pytest.mark.parametrize("value", NASTY)
def test_strings_round_trip_through_safe_load(value):
    assert yaml.safe_load(format_entry("name", value))["name"] == value


def test_random_strings_round_trip():
    rng = random.Random(7)
    alphabet = "ab :#@-'\"\\\n\t[]{},&*!|>%?~`é🦞\u2028\x85\x00\x7f"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert yaml.safe_load(format_entry("k", value))["k"] == value, repr(value)


def test_plain_text_stays_unquoted_and_other_types_are_native():
    assert format_scalar("Unity UI overhaul") == "Unity UI overhaul"
    assert format_scalar("no") == '"no"'
    assert format_scalar(datetime(2026, 2, 16, 12, tzinfo=timezone.utc)) == "2026-02-16T12:00:00Z"
    assert format_scalar(30) == "30" and format_scalar(True) == "true" and format_scalar(None) == ""
    assert format_entry("repos", ["a/b", "c/d"]) == "repos:\n  - a/b\n  - c/d\n"
    assert format_entry("repos", []) == "repos: []\n"
    assert yaml.safe_load(format_entry("created", datetime(2026, 2, 16, 12, tzinfo=timezone.utc)))[
        "created"] == datetime(2026, 2, 16, 12, tzinfo=timezone.utc)


def test_set_keys_rewrites_only_owned_entries():
    fm = (
        "status: queued   # old value\n"
        "reviewer: anna    # a person's key and comment\n"
        "repos:\n- a/b\n- c/d\n"
        "\n"
        "# a comment of their own\n"
        "notes: |\n  line one\n\n  line two\n"
        "status: duplicate\n"
    )
    out = set_keys(fm, {"status": "active", "repos": ["x/y"], "name": "new key"})
    assert out == (
        "status: active\n"
        "reviewer: anna    # a person's key and comment\n"
        "repos:\n  - x/y\n"
        "\n"
        "# a comment of their own\n"
        "notes: |\n  line one\n\n  line two\n"
        "name: new key\n"
    )


def test_update_keeps_body_and_crlf_bytes():
    text = "---\r\nstatus: queued\r\nmine: 1\r\n---\r\n# Title\r\n\r\nbody  \r\n"
    out = update_keys(text, {"status": "active"})
    assert out == "---\r\nstatus: active\r\nmine: 1\r\n---\r\n# Title\r\n\r\nbody  \r\n"
    assert update_keys(out, {"status": "active"}) is out  # nothing to change: the same text


def test_a_file_without_frontmatter_gets_one_and_keeps_its_body():
    body = "# Notes\n\nwritten by hand\n"
    out = update_keys(body, {"id": "T1"})
    assert out == "---\nid: T1\n---\n" + body


def test_unreadable_or_unsafe_frontmatter_is_refused():
    with pytest.raises(FrontmatterError, match="never closed"):
        update_keys("---\nstatus: queued\n# Title\n", {"status": "active"})
    with pytest.raises(FrontmatterError, match=r"not valid YAML.*line 4"):
        update_keys("---\nid: T1\nbad: [unclosed\n---\nbody\n", {"status": "active"})
    # An owned key written as a flow mapping spanning lines would leave debris behind: refused.
    with pytest.raises(FrontmatterError, match="more than the store's keys"):
        update_keys("---\nstatus: {a: 1,\nb: 2}\nmine: x\n---\n", {"status": "active"})


def test_split_joins_back_exactly_and_parse_reads_it():
    text = "---\nid: T1\ntags: [a, b]\n...\nbody\n"
    doc = split(text)
    assert doc.text == text and doc.body == "body\n"
    assert parse(doc.frontmatter) == {"id": "T1", "tags": ["a", "b"]}
    assert split("no frontmatter\n").frontmatter is None


@pytest.mark.parametrize("value", [0.0, 1e-06, 0.013501, 1e20, 2.5, -0.000003])
def test_money_and_other_floats_are_written_as_numbers_yaml_reads_back(value):
    text = format_scalar(value)
    assert "e" not in text.lower()
    assert yaml.safe_load(f"x: {text}")["x"] == value
