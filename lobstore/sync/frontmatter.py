"""Markdown files with YAML frontmatter: read them, and change only the keys we own.

A vault file belongs to people as much as to the store, so this module never round-trips a
whole frontmatter block through a YAML dumper (that would drop comments, reorder keys and
restyle values). :func:`update_keys` rewrites only the lines of the keys it is given and
keeps every other byte; it then parses the result to prove nothing else changed.

The vault importer reuses :func:`split` and :func:`parse` to read today's task files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import yaml

from ..clock import to_iso
from ..errors import LobstoreError

try:  # the C loader is ~10x faster; the pure-Python one reads the same documents
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

FENCE_RE = re.compile(r"^---[ \t]*(\r?\n|$)")
CLOSING_RE = re.compile(r"^(?:---|\.\.\.)[ \t]*(\r?\n|$)", re.M)
# A top-level key at column 0. Inside a block scalar or a nested value every line is indented,
# so a line like this always starts a new top-level entry.
KEY_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]|\r?\n|$)")
# Strings written without quotes: letters first, then a conservative set of characters that
# YAML (1.1 and 1.2) and Dataview read as plain text.
PLAIN_RE = re.compile(r"^[^\W\d][\w .,/()+=-]*$")
# YAML 1.1 booleans PyYAML does not resolve but other readers (Obsidian's) may.
_AMBIGUOUS_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_STR_TAG = "tag:yaml.org,2002:str"
_resolver = yaml.resolver.Resolver()


class FrontmatterError(LobstoreError):
    """A file's frontmatter cannot be read, or cannot be edited without risking what it holds."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message if line is None else f"{message} (line {line})")
        self.line = line


@dataclass(frozen=True)
class Document:
    """A markdown file cut in parts that join back to the exact original text."""

    frontmatter: str | None  # the text between the fences; None when the file has none
    body: str
    opening: str = "---\n"
    closing: str = "---\n"

    @property
    def text(self) -> str:
        if self.frontmatter is None:
            return self.body
        return f"{self.opening}{self.frontmatter}{self.closing}{self.body}"


def split(text: str) -> Document:
    """Cut ``text`` into frontmatter and body. A file that opens a fence and never closes it
    is a FrontmatterError: guessing where it ends could swallow the body."""
    opening = FENCE_RE.match(text)
    if not opening:
        return Document(frontmatter=None, body=text)
    start = opening.end()
    closing = CLOSING_RE.search(text, start)
    if closing is None:
        raise FrontmatterError("frontmatter opened with --- is never closed")
    return Document(
        frontmatter=text[start:closing.start()],
        body=text[closing.end():],
        opening=opening.group(0),
        closing=closing.group(0),
    )


def parse(frontmatter: str | None) -> dict[str, Any]:
    """The frontmatter's mapping ({} when empty); FrontmatterError says why and where not."""
    if not frontmatter or not frontmatter.strip():
        return {}
    try:
        data = yaml.load(frontmatter, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FrontmatterError(
            f"frontmatter is not valid YAML: {problem}",
            line=None if mark is None else mark.line + 2,  # +1 for 1-based, +1 for the fence
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FrontmatterError(f"frontmatter is a YAML {type(data).__name__}, not a mapping of keys")
    return data


# -- writing values ---------------------------------------------------------------------------
def format_scalar(value: Any) -> str:
    """One value as Dataview-safe YAML: ISO dates with T, numbers as numbers, strings
    quoted whenever a reader could take them for something else."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, datetime):
        return to_iso(value) or ""
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if _plain_is_safe(text):
        return text
    return _double_quoted(text)


def _float(value: float) -> str:
    """A float YAML 1.1 readers (PyYAML) take for a float: never exponent notation, which they
    read as a string (1e-06), and always a decimal point."""
    if not math.isfinite(value):
        return {"inf": ".inf", "-inf": "-.inf"}.get(repr(value), ".nan")
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text if "." in text else text + ".0"


def _plain_is_safe(text: str) -> bool:
    return (
        bool(PLAIN_RE.fullmatch(text))
        and not text.endswith(" ")
        and text.lower() not in _AMBIGUOUS_WORDS
        and _resolver.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG
    )


def _double_quoted(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    # JSON leaves some characters bare that YAML folds or refuses (NEL, line separators, C1
    # controls, BOM): escape every non-printable character so the value reads back exactly.
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in out)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def format_entry(key: str, value: Any, newline: str = "\n") -> str:
    """``key: value`` as frontmatter lines; lists as block lists, mappings one level deep."""
    if isinstance(value, list | tuple):
        if not value:
            return f"{key}: []{newline}"
        return f"{key}:{newline}" + "".join(f"  - {format_scalar(item)}{newline}" for item in value)
    if isinstance(value, Mapping):
        if not value:
            return f"{key}: {{}}{newline}"
        return f"{key}:{newline}" + "".join(
            f"  {format_scalar(str(k))}: {format_scalar(v)}".rstrip() + newline for k, v in value.items()
        )
    scalar = format_scalar(value)
    return f"{key}: {scalar}{newline}" if scalar else f"{key}:{newline}"


def expected(value: Any) -> Any:
    """What ``yaml.safe_load`` gives back for a value written by :func:`format_entry`."""
    if isinstance(value, list | tuple):
        return [expected(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): expected(v) for k, v in value.items()}
    return value


def set_keys(frontmatter: str, values: Mapping[str, Any]) -> str:
    """``frontmatter`` with the entries of ``values`` rewritten in place (new keys appended
    in the order given) and every other line kept as it was. A key that appears twice loses
    its later copies: the value is ours and one copy is what readers expect."""
    lines = frontmatter.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    out: list[str] = []
    done: set[str] = set()
    i = 0
    while i < len(lines):
        match = KEY_LINE_RE.match(lines[i])
        if match and match.group(1) in values:
            key = match.group(1)
            end = _entry_end(lines, i)
            if key not in done:
                out.append(format_entry(key, values[key], newline))
                done.add(key)
            i = end
            continue
        out.append(lines[i])
        i += 1
    if out and not out[-1].endswith(("\n", "\r")):
        out[-1] += newline
    out.extend(format_entry(key, value, newline) for key, value in values.items() if key not in done)
    return "".join(out)


def _entry_end(lines: list[str], start: int) -> int:
    """Index of the first line after the entry starting at ``start``: its value may continue
    on indented lines or as a block list at column 0 (``- item``); blank lines inside it count
    only when the value continues after them."""
    end = start + 1
    j = start + 1
    while j < len(lines):
        line = lines[j]
        if not line.strip():
            j += 1
            continue
        if line[0] in " \t" or line.startswith("-") and line[1:2] in (" ", "\t", "\n", "\r", ""):
            j += 1
            end = j
            continue
        break
    return end


def update_keys(text: str | None, values: Mapping[str, Any]) -> str:
    """The file ``text`` with its frontmatter keys ``values`` set and everything else kept
    byte for byte; ``None`` (no file) gives a file with only the frontmatter.

    Raises FrontmatterError, leaving the decision to the caller, when the existing
    frontmatter is unreadable or when the edit would change anything besides ``values``.
    """
    doc = split(text or "")
    new_frontmatter = set_keys(doc.frontmatter or "", values)
    if doc.frontmatter is None:
        newline = "\r\n" if "\r\n" in doc.body[:500] else "\n"
        edited = Document(new_frontmatter, doc.body, opening=f"---{newline}", closing=f"---{newline}")
    else:
        edited = Document(new_frontmatter, doc.body, opening=doc.opening, closing=doc.closing)
    if text is not None and edited.text == text:
        return text
    old = parse(doc.frontmatter)
    new = parse(new_frontmatter)
    want = {**old, **{key: expected(value) for key, value in values.items()}}
    if new != want:
        wrong = sorted(k for k in set(new) | set(want) if new.get(k, ...) != want.get(k, ...))
        raise FrontmatterError(
            f"editing the frontmatter would change more than the store's keys ({', '.join(wrong)}); "
            "the file was left as it is"
        )
    return edited.text
