"""Retention: ``lobstore prune``. Raw cost events older than an age go (their numbers stay in
the rollups and the cost archive), and so do expired idempotency keys and, when an age is
given, old token audit entries. A jobs-file job can run it on a schedule."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..clock import to_iso, utcnow
from ..errors import ValidationError
from ..repositories.costs import PruneProgress
from ..repositories.costs.common import floor_hour
from ..store import Store

_AGE = re.compile(r"^\s*(\d{1,6})\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_age(text: str, name: str) -> timedelta:
    """``180d``, ``12w`` or ``36h``."""
    match = _AGE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValidationError(f"{name} must be an age such as 180d, 12w or 36h, got {text!r}", field=name)
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class PruneReport:
    dry_run: bool
    costs_before: datetime
    cost_events: int
    idempotency_keys: int
    token_audit_rows: int
    token_audit_before: datetime | None = None
    batches: int = 0
    longest_hold_ms: float = 0.0
    seconds: float = 0.0
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "costs_before": to_iso(self.costs_before), "cost_events": self.cost_events,
                "idempotency_keys": self.idempotency_keys, "token_audit_rows": self.token_audit_rows,
                "token_audit_before": to_iso(self.token_audit_before), "batches": self.batches,
                "longest_hold_ms": round(self.longest_hold_ms, 1), "seconds": round(self.seconds, 3),
                "run_id": self.run_id}


def prune(store: Store, *, costs_older_than: timedelta, token_audit_older_than: timedelta | None = None,
          dry_run: bool = False, actor: str | None = None,
          on_batch: Callable[[PruneProgress], None] | None = None) -> PruneReport:
    """Prune what is older than the ages given (a dry run counts it and writes nothing)."""
    now = utcnow()
    before = floor_hour(now - costs_older_than)
    audit_before = None if token_audit_older_than is None else now - token_audit_older_than
    started = time.monotonic()
    if dry_run:
        audit_rows = 0 if audit_before is None else store.broker.prune_audit(audit_before, dry_run=True)
        return PruneReport(dry_run=True, costs_before=before, cost_events=store.costs.count_prunable(before),
                           idempotency_keys=store.idempotency.purge_expired(dry_run=True),
                           token_audit_rows=audit_rows, token_audit_before=audit_before)
    progress = store.costs.prune_events(before, actor=actor, on_batch=on_batch)
    keys = store.idempotency.purge_expired()
    audit_rows = 0 if audit_before is None else store.broker.prune_audit(audit_before)
    store.costs.record_prune(progress, idempotency_keys=keys, token_audit_rows=audit_rows)
    return PruneReport(dry_run=False, costs_before=before, cost_events=progress.events, idempotency_keys=keys,
                       token_audit_rows=audit_rows, token_audit_before=audit_before, batches=progress.batches,
                       longest_hold_ms=progress.longest_hold_ms, seconds=time.monotonic() - started,
                       run_id=progress.run_id)
