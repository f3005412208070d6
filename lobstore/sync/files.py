"""The vault's files: which folder a task's file lives in, the index of the store's task files
(``T42.md``) already in a vault, and reading and writing them byte for byte.

The sync cycle and the vault importer both find task files through :func:`task_files`, so
what counts as the store's own file is written down once.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from .. import status as st

DEFAULT_TASKS_DIR = "010-tasks"
DEFAULT_REPORTS_DIR = "lobstore"

# Status -> folder under the tasks dir (DESIGN.md: active holds everything still open).
FOLDERS: dict[str, str] = {
    st.QUEUED: "active", st.ACTIVE: "active", st.BLOCKED: "active",
    st.COMPLETED: "completed",
    st.FAILED: "failed", st.CANCELLED: "failed",
}
TASK_FOLDERS: tuple[str, ...] = ("active", "completed", "failed")


@lru_cache(maxsize=16)
def task_file_re(prefix: str) -> re.Pattern[str]:
    """The name of one of the store's task files: ``T42.md`` for the prefix ``T``."""
    return re.compile(rf"^{re.escape(prefix)}([0-9]+)\.md$")


def is_task_file(name: str, prefix: str) -> bool:
    return task_file_re(prefix).match(name) is not None


def task_files(root: str | os.PathLike[str], tasks_dir: str, prefix: str) -> dict[str, list[str]]:
    """Every task file of the store in the vault at ``root``, by ref, paths relative to the
    vault: ``{"T42": ["010-tasks/active/T42.md"]}``. A ref with files in several folders (a
    copy someone made by hand) lists each, in folder order."""
    pattern = task_file_re(prefix)
    index: dict[str, list[str]] = {}
    for folder in TASK_FOLDERS:
        rel = f"{tasks_dir.strip('/')}/{folder}"
        try:
            names = os.listdir(Path(root) / rel)
        except FileNotFoundError:
            continue
        for name in sorted(names):
            if pattern.match(name):
                index.setdefault(name[:-3], []).append(f"{rel}/{name}")
    return index


def read_text(path: Path) -> str:
    # Bytes in, bytes out: no newline translation, so \r\n files stay \r\n.
    return path.read_bytes().decode("utf-8")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` atomically: Obsidian (or a lobster) never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.lobstore-tmp")
    tmp.write_bytes(text.encode("utf-8"))
    os.replace(tmp, path)
