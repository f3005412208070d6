"""The sweep as a background service of `lobstore serve`: one process per database sweeps.

Guarded by the ``lease-sweep`` duty (:mod:`lobstore.duties`), as the job scheduler is by
``jobs``: the process holding it sweeps every ``sweep_interval`` seconds, the others stand by
and take over when it ends. The sweep is safe to run twice at once anyway (rows are locked and
decided again); the duty only saves the work.
"""

from __future__ import annotations

from typing import Any

from ..duties import Duty
from ..services import BackgroundService
from ..store import Store
from .sweep import SweepMove, sweep

DUTY = "lease-sweep"


class LeaseSweeper(BackgroundService):
    name = "lease sweep"
    duty = DUTY  # passes run only in the replica holding it (services.BackgroundService)

    def __init__(self, store: Store, *, interval: float | None = None, duty: Duty | None = None) -> None:
        super().__init__(interval=interval or store.lifecycle.sweep_interval, duty=duty)
        self.store = store
        self.moves = 0

    def run_pass(self) -> list[SweepMove]:
        moves = sweep(self.store)
        self.moves += len(moves)
        return moves

    def describe(self) -> dict[str, Any]:
        return {"interval": self.interval, "role": "leader" if self.on_duty else "standby",
                "moves": self.moves, **(self.gate.duty.describe() if self.gate is not None else {})}
