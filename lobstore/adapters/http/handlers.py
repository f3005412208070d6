"""What the route groups share."""

from __future__ import annotations

from ...store import Store


class Handlers:
    """What the route groups below share: the store and the body size limit."""

    def __init__(self, store: Store, *, max_body: int) -> None:
        self.store = store
        self.max_body = max_body
