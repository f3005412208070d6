"""Slowing down repeated bad credentials from one address.

Why a table in memory (and not in the database) is enough here: secrets are 256 random bits,
so no rate of guessing finds one; what this table protects is the server's time, its log
and its database from a client that keeps knocking with a wrong, revoked or expired secret.
Losing the table on a restart only grants a few free attempts again, each replica keeping its
own only multiplies those few, and keeping it in memory means a flood of bad requests never
turns into a flood of writes. The table is bounded: the oldest addresses make room.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import TooManyFailuresError

log = logging.getLogger(__name__)

MAX_ADDRESSES = 4096  # addresses remembered at once (a few hundred bytes each)
FREE_FAILURES = 5  # bad credentials an address may send before it is slowed
BASE_DELAY = 1.0  # seconds of the first wait; each further failure doubles it
MAX_DELAY = 300.0
FORGET_AFTER = 900.0  # seconds without a failure after which an address starts afresh
MAX_LOGGED = 4096  # (address, credential name) pairs whose first failure was logged


@dataclass
class _Entry:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class FailureThrottle:
    """Per address: the first ``free_failures`` bad credentials cost nothing; after them the
    address must wait ``base_delay`` seconds, doubling with each further failure up to
    ``max_delay``. A request from a waiting address that presents a credential is refused
    with 429 (``Retry-After``) without being checked. A good credential clears the address."""

    def __init__(
        self,
        *,
        max_addresses: int = MAX_ADDRESSES,
        free_failures: int = FREE_FAILURES,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        forget_after: float = FORGET_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_addresses = max_addresses
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Apart from the failure counts, which a good credential clears: a client that keeps
        # sending a revoked secret between good ones is still logged once.
        self._logged: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise TooManyFailuresError while ``address`` must wait."""
        with self._lock:
            entry = self._current(address)
            wait = 0.0 if entry is None else entry.blocked_until - self._clock()
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyFailuresError(
                f"too many bad credentials from {address}: wait {seconds} s before trying again",
                retry_after=seconds,
            )

    def failed(self, address: str, name: str, reason: str) -> None:
        """Count a bad credential (``name``: the credential's name, or "unknown"), and log it
        the first time this address fails with this name."""
        now = self._clock()
        with self._lock:
            entry = self._current(address)
            if entry is None:
                entry = self._entries[address] = _Entry()
                while len(self._entries) > self.max_addresses:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(address)
            entry.failures += 1
            entry.last_failure = now
            over = entry.failures - self.free_failures
            if over > 0:
                entry.blocked_until = now + min(self.base_delay * 2 ** (over - 1), self.max_delay)
            first = (address, name) not in self._logged
            self._logged[address, name] = None
            self._logged.move_to_end((address, name))
            while len(self._logged) > MAX_LOGGED:
                self._logged.popitem(last=False)
            failures = entry.failures
        if first:
            log.warning("refused a credential from %s: %s (%s); further failures of it from there "
                        "are not logged", address, name, reason)
        else:
            log.debug("refused a credential from %s again: %s (%s), failure %d", address, name, reason, failures)
        if over == 1:
            log.warning("slowing down %s after %d bad credentials", address, failures)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._entries.pop(address, None)

    def _current(self, address: str) -> _Entry | None:
        entry = self._entries.get(address)
        if entry is not None and self._clock() - entry.last_failure > self.forget_after:
            del self._entries[address]
            return None
        return entry

    def __len__(self) -> int:
        return len(self._entries)
