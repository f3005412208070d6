"""LLM cost events, the price table they are costed from, and the sums people ask for.

An event's cost is the one the Agent SDK reported, or else computed at the price in effect at
the event's time (the event keeps which price), or else — no price for that model then — the
event is stored with its tokens and flagged uncosted. A ``request_id`` is unique: posting the
same event again returns the one stored the first time and counts nothing twice.

One repository (``store.costs``) in five rooms: :mod:`.recording` (events in, with their
rollups), :mod:`.summaries` (sums over ranges and groups), :mod:`.prices` (the price table),
:mod:`.repricing` (table-priced events recomputed after a price changed) and :mod:`.retention`
(old raw events pruned, their numbers archived).
"""

from __future__ import annotations

from .prices import PRICE_CLEANERS, CostPrices, PriceBook
from .recording import EVENT_CLEANERS, MAX_BATCH, CostRecording
from .repricing import REPRICE_CLEANERS, CostRepricing
from .retention import CostRetention, PruneProgress
from .summaries import GROUPINGS, PERIODS, CostSummaries

__all__ = ["CostRepository", "EVENT_CLEANERS", "GROUPINGS", "MAX_BATCH", "PERIODS", "PRICE_CLEANERS", "PriceBook",
           "PruneProgress", "REPRICE_CLEANERS"]


class CostRepository(CostRecording, CostSummaries, CostPrices, CostRepricing, CostRetention):
    """``store.costs``: record events, sum them, keep the prices, re-price, prune."""
