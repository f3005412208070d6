"""Group commit for SQLite: writers queued behind each other share one commit.

``synchronous=FULL`` makes every commit wait for the disk (the WAL's flush: about 0.3 ms here),
and writers take turns: 32 writers at once used to wait for 32 flushes in a row. Now a writer
whose block ends while others queue for the writer lock does not commit: it hands the open
transaction to the next one, and the last of the group commits for all of them — one flush —
after which every member returns. A write is still acknowledged only once the commit that
holds it is on disk (a member's ``with`` block returns after that commit, not before).

Each member's work runs inside a SAVEPOINT of its own: a member whose block raises is rolled
back alone and the others' work stands, so a failed write still leaves nothing behind. If the
savepoint cannot be undone (SQLite already rolled the whole transaction back, the disk is
full...) or the commit fails, every member of the group gets the failure: none of them was
acknowledged. A group takes at most :data:`MAX_GROUP` members, so its first member waits for a
bounded number of others.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

MAX_GROUP = 64


@dataclass(eq=False)
class WriteGroup:
    """The writers sharing one transaction (and its commit)."""

    members: int = 0
    transaction: Any = None  # the SQLAlchemy transaction all members' work is in, once begun
    failed: BaseException | None = None  # what doomed the group before its commit
    error: BaseException | None = None  # why it did not commit (None: it did)
    done: threading.Event = field(default_factory=threading.Event)


class WriteGroups:
    """The writer lock of one database file, and the group its holder belongs to."""

    def __init__(self, max_members: int = MAX_GROUP) -> None:
        self.max_members = max_members
        self.lock = threading.Lock()  # whoever holds it runs its block in the open group
        self._count = threading.Lock()
        self._queued = 0
        self._group: WriteGroup | None = None

    def join(self) -> WriteGroup:
        """Wait for the writer lock; the group this writer now belongs to (one with no
        transaction yet is new: the caller begins it)."""
        with self._count:
            self._queued += 1
        try:
            self.lock.acquire()
        finally:
            with self._count:
                self._queued -= 1
        group = self._group
        if group is None:
            group = self._group = WriteGroup()
        group.members += 1
        return group

    def pass_on(self, group: WriteGroup) -> bool:
        """For a member whose block has ended, the lock still held: hand the lock and the
        open transaction to the next writer (True; then wait for ``group.done``), or not, when
        none is queued, the group is full or doomed (False: the caller ends the group)."""
        with self._count:
            queued = self._queued
        if queued and group.failed is None and group.members < self.max_members:
            self.lock.release()
            return True
        return False

    def finish(self, group: WriteGroup, error: BaseException | None) -> None:
        """End the group (committed, or not with ``error``), release the lock, wake its members."""
        group.error = error
        self._group = None
        self.lock.release()
        group.done.set()
