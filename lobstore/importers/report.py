"""What both importers hand back: a report with one JSON form (``--json``) and one text form
a person reads, built from the same few pieces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

Entry = TypeVar("Entry")


class ImportReportBase:
    """Base of :class:`~lobstore.importers.vault.VaultImportReport` and
    :class:`~lobstore.importers.json_state.JsonStateImportReport` (both dataclasses)."""

    dry_run: bool

    def lines(self) -> list[str]:
        """The summary, line by line."""
        raise NotImplementedError

    def format_text(self) -> str:
        """The summary a person reads at the end of the command."""
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (the command's ``--json``)."""
        return asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses


def section(lines: list[str], title: str, entries: Sequence[Entry], show: Callable[[Entry], str]) -> None:
    """``title (n):`` and one indented line per entry; nothing for no entries."""
    if entries:
        lines.append(f"{title} ({len(entries)}):")
        lines.extend(f"  {show(e)}" for e in entries)


def names(items: Sequence[str], limit: int = 10) -> str:
    """`` (a, b, … (n more))`` after a count; nothing for no items."""
    if not items:
        return ""
    shown = ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
    return f" ({shown})"
