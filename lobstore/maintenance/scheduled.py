"""Scheduled backups: a service of ``lobstore serve`` that backs up every ``interval`` seconds
(with ``lobstore backup`` in a child process) into one folder and keeps the newest backup of each of the last ``keep_daily`` days and of each
of the last ``keep_weekly`` ISO weeks (grandfather-father-son, as restic's ``--keep-daily`` and
``--keep-weekly`` count them); older ones are deleted.

Only files named like ``lobstore-20260301T120000Z.tar.gz`` are counted or deleted: anything
else in the folder is left alone. Scratch folders of backups that were killed
(``.NAME.partial-*``) are removed once they are a day old.

    service = BackupService(store, "/data/backups", interval=86400, keep_daily=7, keep_weekly=4)
    service.start(); ...; service.stop()
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ..clock import utcnow
from ..config import ENV_URL
from ..errors import ConfigurationError, LobstoreError
from ..services import BackgroundService
from ..store import Store
from .archive import PARTIAL, read_manifest
from .backup import NAME_PREFIX, NAME_SUFFIX, BackupResult, backup, destination

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 86400.0
DEFAULT_KEEP_DAILY = 7
DEFAULT_KEEP_WEEKLY = 4
STALE_PARTIAL = 86400.0  # seconds before a killed backup's scratch folder is removed
_NAME = re.compile(re.escape(NAME_PREFIX) + r"(\d{8}T\d{6}Z)" + re.escape(NAME_SUFFIX) + "$")


def backups_in(folder: Path) -> dict[Path, datetime]:
    """The backups this service made in ``folder`` and when, from their names."""
    found = {}
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found[path] = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return found


def to_keep(taken: Iterable[datetime], keep_daily: int, keep_weekly: int) -> set[datetime]:
    """Which backups stay: the newest of each of the ``keep_daily`` most recent days that have a
    backup, and the newest of each of the ``keep_weekly`` most recent ISO weeks (one backup can
    count for both). The newest backup always stays."""
    newest_first = sorted(set(taken), reverse=True)
    kept: set[datetime] = set(newest_first[:1])
    for period, limit in ((_day, keep_daily), (_week, keep_weekly)):
        seen: set[Any] = set()
        for at in newest_first:
            key = period(at)
            if key not in seen:
                if len(seen) == limit:
                    break
                seen.add(key)
                kept.add(at)
    return kept


def prune(folder: Path, keep_daily: int, keep_weekly: int, *, now: float | None = None) -> list[Path]:
    """Delete the backups :func:`to_keep` lets go, and stale scratch folders; what was deleted."""
    found = backups_in(folder)
    keep = to_keep(found.values(), keep_daily, keep_weekly)
    removed = []
    for path, at in sorted(found.items(), key=lambda item: item[1]):
        if at not in keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    cutoff = (time.time() if now is None else now) - STALE_PARTIAL
    for path in folder.iterdir():
        if path.name.startswith(".") and PARTIAL in path.name and path.is_dir() and path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class BackupPlan:
    """What `lobstore serve --backup-dir` was asked for."""

    folder: Path
    interval: float = DEFAULT_INTERVAL
    keep_daily: int = DEFAULT_KEEP_DAILY
    keep_weekly: int = DEFAULT_KEEP_WEEKLY


class BackupService(BackgroundService):
    """Backs up ``store`` into ``folder`` every ``interval`` seconds and prunes old backups.

    The first backup after a start waits until ``interval`` has passed since the newest backup
    already in the folder, so restarting the server does not take a backup each time."""

    name = "scheduled backups"
    duty = "backups"

    def __init__(
        self,
        store: Store,
        folder: str | os.PathLike[str],
        *,
        interval: float = DEFAULT_INTERVAL,
        keep_daily: int = DEFAULT_KEEP_DAILY,
        keep_weekly: int = DEFAULT_KEEP_WEEKLY,
        method: str = "auto",
        retry_delay: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(interval=interval, retry_delay=retry_delay, clock=clock)
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise ConfigurationError(f"the backup folder {self.folder} does not exist: create it first")
        if keep_daily < 1 or keep_weekly < 0:
            raise ConfigurationError(
                f"keep at least 1 daily backup and 0 or more weekly ones, got {keep_daily} and {keep_weekly}"
            )
        self.store = store
        self.keep_daily = keep_daily
        self.keep_weekly = keep_weekly
        self.method = method
        self._wall_clock = wall_clock
        self._first_due: float | None = None
        self._child: subprocess.Popen[str] | None = None
        self.last_backup: BackupResult | None = None

    def on_start(self) -> None:
        self._plan_first()

    def on_duty_acquired(self) -> None:
        self._plan_first()  # the replica that backed up before may have done so lately

    def _plan_first(self) -> None:
        taken = backups_in(self.folder).values()
        if taken:
            age = (self._wall_clock() - max(taken)).total_seconds()
            self._first_due = self._clock() + max(0.0, self.interval - age)

    def due_at(self, scheduled: float) -> float:
        return scheduled if self._first_due is None else max(scheduled, self._first_due)

    def run_pass(self) -> BackupResult:
        self._first_due = None
        if getattr(self.store.backend, "memory", False):  # only this process can read it
            result = backup(self.store, self.folder, method=self.method, clock=self._wall_clock)
        else:
            result = self._backup_in_child()
        self.last_backup = result
        for path in prune(self.folder, self.keep_daily, self.keep_weekly):
            log.info("backup retention: removed %s", path.name)
        return result

    def _backup_in_child(self) -> BackupResult:
        """``lobstore backup`` in a child process. Checksumming and compressing a large store is
        CPU work in Python: in the server's own process it would hold the GIL against the
        request threads (measured: writers slowed to a third, stalls of 0.7 s; in a child
        they keep their pace, bench/bench_backup.py). The URL, password included, goes in the
        child's environment, not on its command line."""
        path = destination(self.folder, self._wall_clock())
        backend = self.store.backend
        url = f"sqlite:///{backend.path}" if backend.name == "sqlite" else \
            backend.engine.url.render_as_string(hide_password=False)
        env = {**os.environ, ENV_URL: url}
        began = time.monotonic()
        command = [sys.executable, "-m", "lobstore.cli", "backup", str(path), "--method", self.method]
        nice = shutil.which("nice")  # the server's requests come first for the CPU
        child = subprocess.Popen([nice, "-n", "10", *command] if nice else command,
                                 env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        self._child = child
        try:
            out, err = child.communicate()
        finally:
            self._child = None
        if child.returncode != 0:
            lines = [line for line in err.splitlines() if line.strip()] or [f"exit status {child.returncode}"]
            raise LobstoreError(f"the backup into {path} failed: {lines[-1].removeprefix('lobstore: error: ')}")
        result = BackupResult(path=path, manifest=read_manifest(path), bytes=path.stat().st_size,
                              seconds=time.monotonic() - began)
        log.info("backup %s written: %s bytes in %.1f s (%s, in a child process)", path, f"{result.bytes:,}",
                 result.seconds, result.manifest["method"])
        return result

    def stop(self, timeout: float | None = None) -> bool:
        """Stop; a backup in progress is ended (it leaves no file under a backup's name)."""
        child = self._child
        if child is not None and child.poll() is None:
            log.info("stopping the backup in progress")
            child.terminate()
        return super().stop(timeout)

    def last_success_timestamp(self) -> float | None:
        """When the newest backup in the folder was taken (Unix time): the metrics start from it,
        so an alert on a stale backup holds across restarts."""
        taken = backups_in(self.folder).values()
        return max(taken).timestamp() if taken else None

    def describe(self) -> dict[str, Any]:
        last = self.last_backup
        return {
            "folder": str(self.folder),
            "interval": self.interval,
            "keep_daily": self.keep_daily,
            "keep_weekly": self.keep_weekly,
            "last_backup": None if last is None else {
                "file": last.path.name, "bytes": last.bytes, "seconds": round(last.seconds, 3),
                "created_at": last.manifest["created_at"],
            },
        }


def _day(at: datetime) -> date:
    return at.date()


def _week(at: datetime) -> tuple[int, int]:
    year, week, _ = at.isocalendar()
    return year, week
