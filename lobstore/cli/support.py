"""What every `lobstore` command module shares: the store its flags name, tables and reports
to print."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import config
from ..store import Store, open_store


def store_from_args(args: argparse.Namespace) -> Store:
    """The store of ``--db`` / ``$LOBSTORE_URL`` with ``--id-prefix`` / ``$LOBSTORE_ID_PREFIX``."""
    return open_store(config.database_url(args.db), id_prefix=config.id_prefix(args.id_prefix))


def add_sync_interval(parser: argparse.ArgumentParser, what: str) -> None:
    """``--sync-interval SECONDS`` (``serve`` and ``sync`` alike), with ``--interval`` accepted
    as another spelling on both; read with :func:`lobstore.config.sync_interval`."""
    parser.add_argument("--sync-interval", metavar="SECONDS", dest="sync_interval",
                        help=f"{what} (${config.ENV_SYNC_INTERVAL}, default {config.DEFAULT_SYNC_INTERVAL:g})")
    parser.add_argument("--interval", metavar="SECONDS", dest="sync_interval", help=argparse.SUPPRESS)


def print_report(report: Any, as_json: bool) -> None:
    """An importer's report: its JSON form with ``--json``, else the text a person reads."""
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else report.format_text())


def format_table(headers: list[str], rows: list[list[Any]], max_width: int = 60) -> str:
    cells = [[_cell(value, max_width) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells
    )


def _cell(value: Any, max_width: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"
