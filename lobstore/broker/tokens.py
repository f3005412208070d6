"""Token providers for the broker, and the in-memory cache of issued tokens.

A provider turns a list of ``owner/repo`` names into a short-lived access token. The store
only knows the :class:`TokenProvider` protocol; :mod:`lobstore.github` ships the GitHub App
provider, and tests or other forges plug in their own.

Why the cache lives in memory and not in the database: a token is a secret that opens the
fleet's repositories for up to an hour. In the database it would travel into backups, into
``lobstore copy`` destinations and to anyone with read access to the store. Losing the cache
on a restart costs one extra call to GitHub per task, nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ..clock import utcnow
from ..models import IssuedToken
from ..work import holding

# A cached token is handed out again until this long before it expires, then a new one is
# minted: a lobster gets at least five minutes of use from any token it receives.
REUSE_MARGIN = timedelta(minutes=5)
PRUNE_FROM = 256  # cached tokens before the first sweep of expired ones


@runtime_checkable
class TokenProvider(Protocol):
    """Mints access tokens. Raise :class:`lobstore.errors.TokenProviderError` on failure."""

    def issue(self, repos: Sequence[str] | None) -> IssuedToken:
        """A token for exactly these ``owner/repo`` repositories; None: for every repository
        the provider's installation reaches (a service's token).

        A provider may also take ``permissions=`` (a mapping such as ``{"contents": "read"}``);
        the broker passes it only when its policy sets other permissions than the provider's
        own defaults."""
        ...


@dataclass(frozen=True)
class _Entry:
    key: object
    token: IssuedToken


class _MintLock:
    """A slot's mint lock and how many requests hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class TokenCache:
    """Tokens per slot (a registration, a service), reused until :data:`REUSE_MARGIN` before
    they expire.

    An entry also remembers what it was minted for (a registration's repos and time), so
    re-registering with other repos never hands out a token for the old ones.

    Memory stays bounded however many tasks are ever served: a slot's mint lock lives only
    while a request holds or waits for it, and expired tokens are dropped as new ones arrive.
    """

    def __init__(self, margin: timedelta = REUSE_MARGIN, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._margin = margin
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._guard = threading.Lock()
        self._locks: dict[Hashable, _MintLock] = {}
        self._prune_at = PRUNE_FROM

    def get(self, slot: Hashable, key: object, now: datetime | None = None) -> IssuedToken | None:
        with self._guard:
            entry = self._entries.get(slot)
            if entry is None or entry.key != key:
                return None
            if not self.reusable(entry.token, now):
                del self._entries[slot]
                return None
            return entry.token

    def put(self, slot: Hashable, key: object, token: IssuedToken) -> None:
        if self.reusable(token):
            with self._guard:
                self._entries[slot] = _Entry(key, token)
                if len(self._entries) >= self._prune_at:
                    self._prune()

    def forget(self, slot: Hashable) -> None:
        with self._guard:
            # Only the token: a mint in progress keeps its lock (see minting), so a request
            # arriving now waits for it instead of minting beside it.
            self._entries.pop(slot, None)

    def reusable(self, token: IssuedToken, now: datetime | None = None) -> bool:
        return token.expires_at - self._margin > (now or self._clock())

    def stats(self) -> dict[str, int]:
        """How many tokens are cached and how many slots have a mint in progress or waiting."""
        with self._guard:
            return {"tokens": len(self._entries), "minting": len(self._locks)}

    @contextmanager
    def minting(self, slot: Hashable) -> Iterator[None]:
        """Held while a slot's token is minted, so concurrent requests for one slot mint once."""
        with self._guard:
            mint = self._locks.get(slot)
            if mint is None:
                mint = self._locks[slot] = _MintLock()
            mint.users += 1
        try:
            with holding(mint.lock):  # its holder waits on GitHub without a work turn
                yield
        finally:
            with self._guard:
                mint.users -= 1
                if mint.users == 0:  # nobody holds or waits for it: the next request makes a new one
                    del self._locks[slot]

    def _prune(self) -> None:
        """Drop tokens no longer handed out (called under the guard). The next prune comes when
        the cache has doubled, so the cost per ``put`` stays constant."""
        now = self._clock()
        for slot in [s for s, entry in self._entries.items() if not self.reusable(entry.token, now)]:
            del self._entries[slot]
        self._prune_at = max(PRUNE_FROM, 2 * len(self._entries))
