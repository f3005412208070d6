"""The task status machine of DESIGN.md, in one table."""

from __future__ import annotations

QUEUED, ACTIVE, BLOCKED = "queued", "active", "blocked"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({ACTIVE, BLOCKED, CANCELLED, FAILED}),
    ACTIVE: frozenset({COMPLETED, FAILED, QUEUED, BLOCKED, CANCELLED}),
    BLOCKED: frozenset({QUEUED, ACTIVE, CANCELLED, FAILED}),
    FAILED: frozenset({QUEUED}),
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
