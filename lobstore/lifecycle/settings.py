"""The lifecycle clock's settings: every threshold, with upstream lobmob's defaults.

Upstream's task manager (``scripts/server/lobmob-task-manager.py``) warns at estimate + 15 min
and fails at 2 × estimate (45 / 90 min without an estimate), re-queues an orphan assigned less
than 30 min ago and fails an older one. A lease of 5 min matches how long upstream let a dead
lobster hold its task (the manager ran every 5 min). Each setting can be given in the
environment as ``LOBSTORE_`` + its name in capitals (``LOBSTORE_LEASE_SECONDS=120``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from ..errors import ConfigurationError
from ..models import PRIORITIES
from ..validation import identifier

ENV_PREFIX = "LOBSTORE_"


@dataclass(frozen=True)
class LifecycleSettings:
    lease_seconds: int = 300  # a claim's lease unless it asks; also a task PATCHed to active
    max_lease_seconds: int = 86_400  # the longest lease a claim or heartbeat may ask for
    requeue_window_minutes: float = 30.0  # an orphan assigned less than this ago is re-queued
    max_attempts: int = 3  # claims before an orphan fails instead (a task's max_attempts wins)
    warn_after_estimate_minutes: float = 15.0  # the timeout warning: estimate + this
    fail_estimate_factor: float = 2.0  # the timeout failure: estimate × this
    warn_minutes: float = 45.0  # the warning for a task without an estimate
    fail_minutes: float = 90.0  # the failure for a task without an estimate
    sweep_interval: float = 30.0  # seconds between sweeps in `lobstore serve`
    investigation_type: str = "system"  # the investigation task lobsigliere picks up
    investigation_priority: str = "high"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, (int, float)) and not value > 0:
                raise ConfigurationError(f"lifecycle setting {item.name} must be above 0, got {value!r}")
        if self.lease_seconds > self.max_lease_seconds:
            raise ConfigurationError(f"lifecycle setting lease_seconds ({self.lease_seconds}) must be at most "
                                     f"max_lease_seconds ({self.max_lease_seconds})")
        try:
            identifier("task type")(self.investigation_type)
        except ValueError as exc:
            raise ConfigurationError(f"lifecycle setting investigation_type {exc}") from None
        if self.investigation_priority not in PRIORITIES:
            raise ConfigurationError(f"lifecycle setting investigation_priority must be one of "
                                     f"{', '.join(PRIORITIES)}, got {self.investigation_priority!r}")

    def thresholds(self, estimate_minutes: int | None) -> tuple[float, float]:
        """Minutes after assignment for the timeout warning and the timeout failure."""
        if estimate_minutes:
            return estimate_minutes + self.warn_after_estimate_minutes, estimate_minutes * self.fail_estimate_factor
        return self.warn_minutes, self.fail_minutes

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LifecycleSettings:
        """The defaults, with each ``LOBSTORE_<NAME>`` set in ``environ`` in place."""
        given = {}
        for item in fields(cls):
            name = ENV_PREFIX + item.name.upper()
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            kind = type(item.default)
            try:
                given[item.name] = kind(raw) if kind is str else kind(float(raw)) if kind is float else int(raw)
            except ValueError:
                raise ConfigurationError(f"${name} must be {'a whole number' if kind is int else 'a number'}, "
                                         f"got {raw!r}") from None
        return replace(cls(), **given)
