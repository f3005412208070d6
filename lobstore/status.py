"""The task status machine of DESIGN.md, in one table.

The fleet's own code (lobmob: the lobboss poller and MCP tools, the lobsters, lobwife's task
manager) makes some moves the design's table did not have; every one of them is allowed here,
with a comment naming the caller that needs it, so `lobstore serve` can stand in for lobwife.
"""

from __future__ import annotations

QUEUED, ACTIVE, BLOCKED = "queued", "active", "blocked"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({
        ACTIVE, BLOCKED, CANCELLED, FAILED,
        # lobmob's lobster (src/lobster/run_task.py) reports `completed` on a task nobody set
        # active: lobboss's spawn_lobster MCP tool never does, and the poller's claim may fail.
        COMPLETED,
    }),
    ACTIVE: frozenset({COMPLETED, FAILED, QUEUED, BLOCKED, CANCELLED}),
    BLOCKED: frozenset({QUEUED, ACTIVE, CANCELLED, FAILED}),
    FAILED: frozenset({
        QUEUED,
        # lobmob's task manager (scripts/server/lobmob-task-manager.py, detect_orphans) fails a
        # task whose Job it cannot see; when kubectl itself failed, the lobster is alive and its
        # run_task.py still reports `completed`. That report is the truth and must land.
        COMPLETED,
    }),
    CANCELLED: frozenset({QUEUED}),
    COMPLETED: frozenset(),
}

STATUSES: tuple[str, ...] = tuple(TRANSITIONS)
TERMINAL: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED})
OPEN: frozenset[str] = frozenset({QUEUED, ACTIVE, BLOCKED})

# The old lobsigliere wrote "system-active"; it means what "active" means.
SYNONYMS = {"system-active": ACTIVE}


def canonical(status: str) -> str:
    """The canonical name of a status (synonyms resolved, case folded); ValueError if unknown."""
    if not isinstance(status, str):  # a list or an object would fail the lookup below as TypeError
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    name = status.strip().lower()
    name = SYNONYMS.get(name, name)
    if name not in TRANSITIONS:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return name


def allowed_targets(current: str) -> list[str]:
    return sorted(TRANSITIONS[current])


def is_allowed(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]
